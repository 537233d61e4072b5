"""Per-partition offset ranges of a record table: what commits, manifests and validation all report."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def partition_ranges(table: pa.Table, by: tuple[str, ...] = ("topic", "partition")) -> list[dict]:
    """Per (topic, partition), or per ``by``: records, first/last offset and timestamp (epoch ms)."""
    if table.num_rows == 0:
        return []
    ts_ms = pc.divide(table["timestamp"].cast(pa.int64()), 1000)
    view = pa.table({**{name: table[name] for name in by}, "offset": table["offset"], "ts": ts_ms})
    agg = view.group_by(list(by)).aggregate(
        [("offset", "count"), ("offset", "min"), ("offset", "max"), ("ts", "min"), ("ts", "max")]
    )
    rows = [
        {
            **{name: r[name] for name in by},
            "records": r["offset_count"],
            "first_offset": r["offset_min"],
            "last_offset": r["offset_max"],
            "first_timestamp_ms": r["ts_min"],
            "last_timestamp_ms": r["ts_max"],
        }
        for r in agg.to_pylist()
    ]
    return sorted(rows, key=lambda r: tuple(r[name] for name in by))
