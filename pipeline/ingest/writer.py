"""Writing one flush of records as zstd Parquet data files under the lake's partition directories.

kbak writes the files itself (rather than through ``write_deltalake``) so that it knows each file's
SHA-256 and exact statistics before the Delta commit: the custody manifest and the commit are built
from what was actually written, and no file is hashed twice.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core import defaults, profile
from pipeline.core.schema import FILE_SCHEMA, PARTITION_COLUMNS
from pipeline.core.storage import Lake

ROW_GROUP_ROWS = 65_536
MIN_TARGET_FILE_SIZE = 1 << 20  # smaller files cost more in metadata and requests than they save
FOOTER_BYTES = 4096  # room kept per row group for page headers and the footer (measured: ~1.3-2.7 KiB)


@dataclass(frozen=True)
class DataFile:
    """A data file written to the lake but not necessarily committed yet."""

    path: str  # relative to the lake root, as the Delta log names it
    size: int
    records: int
    sha256: str
    partition_values: dict[str, str]
    stats: str  # Delta statistics JSON
    modification_time: int

    def manifest_entry(self) -> dict:
        """The file as a custody manifest lists it (files_added, files_removed)."""
        return {
            "path": self.path,
            "size": self.size,
            "records": self.records,
            "sha256": self.sha256,
            "partition_values": self.partition_values,
        }


def write_files(
    lake: Lake,
    table: pa.Table,
    compression_level: int = defaults.COMPRESSION_LEVEL,
    target_file_size: int = defaults.TARGET_FILE_SIZE,
) -> list[DataFile]:
    """Write ``table`` (rows of the record schema) as one or more files per (topic, date) partition."""
    files: list[DataFile] = []
    with profile.stage("split"):
        parts = list(_split_partitions(table))
    for (topic, day), part in parts:
        for data, rows in _encode(part.select(FILE_SCHEMA.names), compression_level, target_file_size):
            rel = f"topic={topic}/date={day}/part-{uuid.uuid4()}.zstd.parquet"
            with profile.stage("upload"):
                lake.write_bytes(rel, memoryview(data))
            with profile.stage("hash+stats"):
                digest, stats = hashlib.sha256(data).hexdigest(), delta_stats(rows)
            files.append(
                DataFile(
                    path=rel,
                    size=len(data),
                    records=rows.num_rows,
                    sha256=digest,
                    partition_values={"topic": topic, "date": day},
                    stats=stats,
                    modification_time=int(time.time() * 1000),
                )
            )
    return files


def _split_partitions(table: pa.Table):
    """Yield ((topic, day), rows) per Delta partition, each partition's rows in offset order.

    Rows arrive in consume order, which already holds every Kafka partition's records in offset
    order; a flush usually covers one (topic, day), and then nothing is copied. Otherwise one stable
    sort by (topic, date) and one ``take`` keep that order, and the groups are zero-copy slices cut
    where (topic, date) changes from one row to the next.
    """
    n = table.num_rows
    if n == 0:
        return
    single = all(len(pc.unique(table[name])) == 1 for name in PARTITION_COLUMNS)
    if single:
        starts = [0]
    else:
        keys = [(name, "ascending") for name in PARTITION_COLUMNS]
        table = table.take(pc.sort_indices(table.select(PARTITION_COLUMNS), sort_keys=keys))  # stable
        changed = np.zeros(n - 1, dtype=bool)
        for name in PARTITION_COLUMNS:
            col = table[name]
            changed |= pc.not_equal(col.slice(1), col.slice(0, n - 1)).to_numpy(zero_copy_only=False)
        starts = [0, *(np.flatnonzero(changed) + 1).tolist()]
    for start, end in zip(starts, [*starts[1:], n], strict=True):
        first = table.slice(start, 1)
        key = (first["topic"][0].as_py(), first["date"][0].as_py().isoformat())
        yield key, table.slice(start, end - start)


# Parquet statistics only where readers prune with them (DuckDB skips row groups by partition, offset
# and time); min/max of 1 KiB keys, values and headers cost time and bytes and prune nothing.
STATISTICS_COLUMNS = ["partition", "offset", "timestamp", "timestamp_type", "source_cluster", "ingested_at"]
# Dictionary encoding only for the columns with a handful of distinct values; on unique binary
# columns pyarrow would build a dictionary, find it too large and fall back, for nothing.
DICTIONARY_COLUMNS = ["timestamp_type", "source_cluster"]


def parquet_options(level: int) -> dict:
    """pyarrow ``ParquetWriter`` options of kbak's data files (the benchmark writes with the same)."""
    return {
        "compression": "zstd",
        "compression_level": level,
        "write_statistics": STATISTICS_COLUMNS,
        "use_dictionary": DICTIONARY_COLUMNS,
    }


def _encode(table: pa.Table, level: int, target_size: int):
    """Yield (Parquet file as a ``pa.Buffer``, rows) chunks, each file kept within ``target_size``.

    A row group is written only if its Arrow (uncompressed) size fits the room left in the file:
    zstd never makes it meaningfully larger, so the cap holds whatever the records hold. Compression
    frees room, so following row groups fill it; the file closes when a 64th of it is left.
    """
    n = table.num_rows
    start = 0
    while start < n:
        buf = pa.BufferOutputStream()  # a native sink: writing pages needs no GIL (io.BytesIO does)
        with profile.stage("encode"):
            writer = pq.ParquetWriter(buf, FILE_SCHEMA, **parquet_options(level))
            end, groups = start, 0
            while end < n:
                room = target_size - buf.tell() - FOOTER_BYTES * (groups + 2)
                if groups and room < target_size / 64:
                    break
                rows = _rows_within(table, end, min(ROW_GROUP_ROWS, n - end), room)
                if rows == 0:
                    if groups:
                        break
                    rows = 1  # a record larger than the target gets a file of its own
                writer.write_table(table.slice(end, rows), row_group_size=rows)
                end += rows
                groups += 1
            writer.close()
            data = buf.getvalue()
        yield data, table.slice(start, end - start)
        start = end


def _rows_within(table: pa.Table, start: int, most: int, room: float) -> int:
    """The most rows from ``start`` (at most ``most``) whose Arrow size is within ``room``."""
    rows = most
    while rows and table.slice(start, rows).nbytes > room:
        per_row = table.slice(start, rows).nbytes / rows
        rows = min(rows - 1, int(room / per_row))
    return max(rows, 0)


def _iso(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def delta_stats(rows: pa.Table) -> str:
    """Delta per-file statistics for the columns audits filter on (timestamps at ms precision)."""
    mins: dict = {}
    maxs: dict = {}
    for name in ("partition", "offset", "timestamp", "ingested_at", "timestamp_type", "source_cluster"):
        mm = pc.min_max(rows[name]).as_py()
        lo, hi = mm["min"], mm["max"]
        if name in ("timestamp", "ingested_at"):
            lo, hi = _iso(lo), _iso(hi)
        mins[name], maxs[name] = lo, hi
    nulls = {name: rows[name].null_count for name in FILE_SCHEMA.names if name != "headers"}
    return json.dumps({"numRecords": rows.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls})
