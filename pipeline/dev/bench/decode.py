"""Decoding benchmark (part of ``make bench BENCH=query``): schema registry payloads vs JSON.

One lake holds the same payments twice: as plain JSON (topic ``payments-json``) and as Confluent
wire-format Avro (topic ``payments-avro``, its schema kept in ``_kbak/schemas`` as ingest keeps
it), written through kbak's own commit path. Measured, via the Python API:

- decoded rows/s: ``count(decoded(value))`` and ``count(field(value, 'customer_id'))`` over the
  whole Avro topic (every row goes through the kept schema);
- ``customer_activity`` for one customer over the quarter on the Avro topic vs the JSON topic.
  On JSON, DuckDB's text prefilter skips most rows before any JSON parsing; on Avro every row of
  the window is decoded (a binary field may hold the id as a number, so no text prefilter applies).

Knobs (env): KBAK_BENCH_DECODE_RECORDS (default 300_000 per topic), KBAK_BENCH_DIR.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import struct
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.core.schema import RECORD_SCHEMA
from pipeline.core.storage import Lake
from pipeline.dev.bench.query import BUILD, MARKER, cached, commit_day
from pipeline.ingest.commit import ensure_table
from pipeline.schemas.store import KeptSchema, SchemaStore

DAYS = 30
START = date(2024, 7, 1)
CUSTOMERS = 5000
CUSTOMER = "customer-00042"
CLUSTER = "bench-cluster"
SCHEMA_ID = 1
AVRO_SCHEMA = {
    "type": "record",
    "name": "Payment",
    "namespace": "bench",
    "fields": [
        {"name": "txn_id", "type": "string"},
        {"name": "customer_id", "type": "string"},
        {"name": "amount_cents", "type": "long"},
        {"name": "currency", "type": "string"},
        {"name": "status", "type": "string"},
    ],
}
TOPICS = ("payments-json", "payments-avro")


def _day(n: int, day: date, first_offset: int, seed: int) -> tuple[list[int], list[bytes], list[bytes], list[dict]]:
    rng = np.random.default_rng(seed)
    day_ms = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    ts = np.sort(day_ms + rng.integers(0, 86_400_000, n))
    ids = rng.integers(0, CUSTOMERS, n)
    cents = rng.integers(100, 500_000, n)
    rows = [
        {
            "txn_id": f"txn-{first_offset + i}",
            "customer_id": f"customer-{int(c):05d}",
            "amount_cents": int(a),
            "currency": "EUR",
            "status": "ok",
        }
        for i, (c, a) in enumerate(zip(ids, cents, strict=True))
    ]
    return ts.tolist(), [r["customer_id"].encode() for r in rows], [json.dumps(r).encode() for r in rows], rows


def _avro(rows: list[dict]) -> list[bytes]:
    import fastavro

    parsed = fastavro.parse_schema(AVRO_SCHEMA)
    header = b"\x00" + struct.pack(">I", SCHEMA_ID)
    out = []
    for r in rows:
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, parsed, r)
        out.append(buf.getvalue())
    return out


def _table(topic: str, ts: list[int], keys: list[bytes], values: list[bytes], first_offset: int) -> pa.Table:
    n = len(ts)
    stamp = pa.array(np.array(ts, dtype=np.int64) * 1000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    return pa.Table.from_arrays(
        [
            pa.array([topic] * n),
            pa.array(np.zeros(n, dtype=np.int32)),
            pa.array(np.arange(first_offset, first_offset + n), pa.int64()),
            stamp,
            pa.array(["create"] * n),
            pa.array(keys, pa.binary()),
            pa.array(values, pa.binary()),
            pa.array([[]] * n, RECORD_SCHEMA.field("headers").type),
            stamp.cast(pa.date32()),
            pa.array([CLUSTER] * n),
            pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC")),
        ],
        schema=RECORD_SCHEMA,
    )


def build_lake(path: Path, records: int) -> Lake:
    lake = Lake.at(path)
    if cached(path, records):
        return lake
    started = time.monotonic()
    dt = ensure_table(lake)
    SchemaStore(lake).put(
        KeptSchema(SCHEMA_ID, "AVRO", json.dumps(AVRO_SCHEMA), subject="payments-avro-value", version=1, source="bench")
    )
    per_day, offset = records // DAYS, 0
    for d in range(DAYS):
        ts, keys, values, rows = _day(per_day, START + timedelta(days=d), offset, seed=d)
        table = pa.concat_tables(
            [_table("payments-json", ts, keys, values, offset), _table("payments-avro", ts, keys, _avro(rows), offset)]
        )
        parts = [(t, 0) for t in TOPICS]
        commit_day(lake, dt, table, parts, d)
        offset += per_day
    (path / MARKER).write_text(json.dumps({"records": records, "build": BUILD}))
    print(f"built lake {path}: {offset:,} records per topic in {time.monotonic() - started:.1f}s", flush=True)
    return lake


def _timed(fn, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        t = time.monotonic()
        result = fn()
        times.append(time.monotonic() - t)
    return statistics.median(times), result


def main() -> None:
    from pipeline.query.engine import connect
    from pipeline.query.named import run_query

    records = int(os.environ.get("KBAK_BENCH_DECODE_RECORDS", 300_000))
    base = Path(os.environ.get("KBAK_BENCH_DIR") or Path(tempfile.gettempdir()) / "kbak-bench")
    lake = build_lake(base / f"decode-lake-{records}", records)
    con = connect(lake)
    n = con.execute("SELECT count(*) FROM records WHERE topic = 'payments-avro'").fetchone()[0]
    for expr in ("decoded(value)", "field(value, 'customer_id')"):
        sql = f"SELECT count({expr}) FROM records WHERE topic = 'payments-avro'"
        secs, got = _timed(lambda sql=sql: con.execute(sql).fetchone()[0], 3)
        assert got == n, (expr, got, n)
        print(f"{expr} over {n:,} Avro rows: median {secs:.2f}s = {n / secs:,.0f} rows/s", flush=True)
    params = {"customer": CUSTOMER, "start": "2024-07-01", "end": "2024-10-01"}
    found = {}
    for topic in TOPICS:
        secs, rows = _timed(lambda t=topic: run_query(con, "customer_activity", {**params, "topics": t}).fetchall(), 3)
        found[topic] = len(rows)
        print(f"customer_activity ({CUSTOMER}, Q3 2024) on {topic}: {len(rows)} rows, median {secs:.2f}s", flush=True)
    if len(set(found.values())) != 1:
        print(f"WARNING: the two topics disagree: {found}")


if __name__ == "__main__":
    main()
