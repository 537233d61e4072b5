"""Query benchmark: ``kbak query customer_activity`` vs the restore route, on a 5.4M-record lake.

The lake (3 topics, 90 days from 2024-07-01, i.e. Q3 2024) is generated as Arrow columns and
written through kbak's own writer and commit path (``pipeline.ingest.commit.commit_records``: zstd
Parquet, Delta commits with per-partition app transactions, custody manifests), one commit per day;
producing 5.4M records through Kafka and ``kbak ingest`` first would only make the build slower,
not the lake different. The lake is cached between runs under ``$KBAK_BENCH_DIR`` (default: the
system temp dir).

Then, for one customer over the quarter:

(a) ``kbak query customer_activity`` (the real CLI, process start included), and
(b) the restore route: ``kbak replay`` of the quarter's window of the topic to a scratch topic on a
    local broker, then a console-style consumer scanning the scratch topic from the beginning and
    keeping the customer's records (key match or JSON ``customer_id`` match, like the query).

Knobs (env): KBAK_BENCH_QUERY_RECORDS (default 5_400_000), KBAK_BENCH_DIR.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from pipeline.core.schema import HEADER_TYPE, RECORD_SCHEMA
from pipeline.core.storage import Lake
from pipeline.core.table import committed_offsets
from pipeline.ingest.commit import commit_records, ensure_table

DAYS = 90
START = date(2024, 7, 1)
CUSTOMERS = 5000
TOPICS = {"payments": (6, 0.5), "user-activity": (4, 0.3), "account-state": (2, 0.2)}  # partitions, share
CUSTOMER = "customer-00042"
CLUSTER = "bench-cluster"
KBAK = str(Path(sys.executable).parent / "kbak")
_TS = pa.timestamp("us", tz="UTC")


def _strings(prefix: str, ids: np.ndarray, width: int) -> pa.Array:
    names = pa.array([f"{prefix}{i:0{width}d}" for i in range(int(ids.max()) + 1)])
    return names.take(pa.array(ids))


def _day_table(topic: str, partitions: int, n: int, day: date, next_offset: np.ndarray, seed: int) -> pa.Table:
    """``n`` records of ``topic`` on ``day``; keyed by customer/user, which picks the partition."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, CUSTOMERS, n)
    part = (ids % partitions).astype(np.int32)
    day_ms = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    ts = day_ms + rng.integers(0, 86_400_000, n)
    order = np.lexsort((ts, part))
    ids, part, ts = ids[order], part[order], ts[order]
    starts = np.searchsorted(part, np.arange(partitions))
    offsets = np.arange(n) - starts[part] + next_offset[part]
    next_offset += np.bincount(part, minlength=partitions)

    customer = _strings("customer-", ids, 5)
    seq = pc.cast(pa.array(offsets), pa.string())
    if topic == "payments":
        key = customer
        cents = pc.cast(pa.array(rng.integers(100, 500_000, n)), pa.string())
        value = pc.binary_join_element_wise(
            '{"txn_id": "txn-', seq, '", "customer_id": "', customer, '", "amount_cents": ', cents,
            ', "currency": "EUR", "status": "ok"}', "",
        )  # fmt: skip
    elif topic == "user-activity":
        key = _strings("user-", ids, 5)
        value = pc.binary_join_element_wise('{"user_id": "', key, '", "page": "/statements", "seq": ', seq, "}", "")
    else:
        key = _strings("acct-", ids, 5)
        value = pc.binary_join_element_wise(
            '{"account": "', key, '", "customer_id": "', customer, '", "state": "active"}', ""
        )
    header_values = pc.take(
        pa.concat_arrays([pc.cast(seq, pa.binary()), pa.array([b"application/json"] * n)]),
        pa.array(np.stack([np.arange(n), np.arange(n) + n], axis=1).ravel()),
    )
    header_keys = pa.array(["trace-id", "content-type"] * n)
    headers = pa.ListArray.from_arrays(
        pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)),
        pa.StructArray.from_arrays([header_keys, header_values], fields=list(HEADER_TYPE)),
        type=RECORD_SCHEMA.field("headers").type,
    )
    stamp = pa.array(ts * 1000, pa.int64()).cast(_TS)
    return pa.Table.from_arrays(
        [
            pa.array([topic] * n),
            pa.array(part),
            pa.array(offsets, pa.int64()),
            stamp,
            pa.array(["create"] * n),
            pc.cast(key, pa.binary()),
            pc.cast(value, pa.binary()),
            headers,
            stamp.cast(pa.date32()),
            pa.array([CLUSTER] * n),
            pa.array([datetime.now(UTC)] * n, _TS),
        ],
        schema=RECORD_SCHEMA,
    )


MARKER = "_kbak_bench.json"
# Lakes built before this build were short of records (every other day's commit fenced off): rebuilt.
BUILD = 2


def cached(path: Path, records: int) -> bool:
    """True when ``path`` holds a bench lake built for ``records``; otherwise it is cleared for a rebuild."""
    marker = path / MARKER
    built = json.loads(marker.read_text()) if marker.exists() else {}
    if built.get("records") == records and built.get("build") == BUILD:
        print(f"reusing lake {path} ({records:,} records)", flush=True)
        return True
    if path.exists():
        import shutil

        shutil.rmtree(path)
    return False


def commit_day(lake: Lake, dt: DeltaTable, table: pa.Table, parts: list[tuple[str, int]], day: int) -> None:
    """Commit one day of a bench lake through kbak's commit path; a commit fenced off stops the build
    (a lake short of records would skew every figure measured on it)."""
    have = committed_offsets(dt, CLUSTER, parts)
    expected = {tp: have.get(tp) for tp in parts}
    res = commit_records(lake, dt, table, expected, source_cluster=CLUSTER, backup_id="bench")
    if res.rejected or res.records != table.num_rows:
        raise RuntimeError(f"the bench lake's commit of day {day} was fenced off: {res.rejected}")


def build_lake(path: Path, records: int) -> Lake:
    """The benchmark lake, built once and reused while its size matches."""
    lake = Lake.at(path)
    if cached(path, records):
        return lake
    marker = path / MARKER
    started = time.monotonic()
    dt = ensure_table(lake)
    per_day = records // DAYS
    next_offsets = {t: np.zeros(p, dtype=np.int64) for t, (p, _) in TOPICS.items()}
    for d in range(DAYS):
        day = START + timedelta(days=d)
        tables = [
            _day_table(t, p, int(per_day * share), day, next_offsets[t], seed=d * 31 + i)
            for i, (t, (p, share)) in enumerate(TOPICS.items())
        ]
        table = pa.concat_tables(tables)
        parts = [(t, p) for t, (n, _) in TOPICS.items() for p in range(n)]
        commit_day(lake, dt, table, parts, d)
        if d % 10 == 9:
            print(f"  built {d + 1}/{DAYS} days ({time.monotonic() - started:.0f}s)", flush=True)
    total = sum(int(per_day * share) for _, share in TOPICS.values()) * DAYS
    marker.write_text(json.dumps({"records": records, "actual": total, "build": BUILD}))
    print(f"built lake {path}: {total:,} records in {time.monotonic() - started:.1f}s", flush=True)
    return lake


def time_query(lake: Lake, out: Path, runs: int = 5) -> tuple[list[float], int]:
    args = [
        KBAK, "query", "customer_activity", "--lake", lake.uri,
        "-p", f"customer={CUSTOMER}", "-p", "start=2024-07-01", "-p", "end=2024-10-01", "-p", "topics=payments",
        "--format", "csv", "--output", str(out),
    ]  # fmt: skip
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    rows = len(out.read_text().splitlines()) - 1
    return times, rows


def time_python_api(lake: Lake, runs: int = 3) -> list[float]:
    """The same query through the Python API (what notebooks use): connect + run + fetch, no process start."""
    from pipeline.query.engine import connect
    from pipeline.query.named import run_query

    params = {"customer": CUSTOMER, "start": "2024-07-01", "end": "2024-10-01", "topics": ["payments"]}
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run_query(connect(lake), "customer_activity", params).fetchall()
        times.append(time.perf_counter() - t0)
    return times


def restore_route(lake: Lake) -> tuple[float, float, int, str]:
    """Replay the quarter of ``payments`` to a scratch topic, then scan it for the customer."""
    from confluent_kafka import Consumer, TopicPartition

    from pipeline.dev.servers import LocalBroker

    with LocalBroker() as broker:
        scratch = "restore-payments"
        t0 = time.perf_counter()
        how = _replay(lake, broker.bootstrap, scratch)
        replay_s = time.perf_counter() - t0

        t1 = time.perf_counter()
        consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "console-consumer-bench",
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        partitions = TOPICS["payments"][0]
        consumer.assign([TopicPartition(scratch, p, 0) for p in range(partitions)])
        wanted = CUSTOMER.encode()
        found, eof = 0, set()
        while len(eof) < partitions:
            for m in consumer.consume(10_000, 1.0):
                if m.error():
                    eof.add(m.partition())
                    continue
                # What an auditor does with kafka-console-consumer | grep | jq: text, then JSON.
                if m.key() == wanted:
                    found += 1
                    continue
                value = m.value()
                if value and wanted in value and json.loads(value).get("customer_id") == CUSTOMER:
                    found += 1
        consumer.close()
        return replay_s, time.perf_counter() - t1, found, how


def _replay(lake: Lake, bootstrap: str, scratch: str) -> str:
    args = [
        KBAK, "replay", "--lake", lake.uri, "-b", bootstrap, "-t", "payments", "--from", "2024-07-01",
        "--to", "2024-09-30", "--topic-map", f"payments={scratch}", "--create-topics", "--json", "--quiet",
    ]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode == 0:
        return "kbak replay"
    print(f"  kbak replay failed ({proc.stderr.strip()[:200]}); producing the window with confluent-kafka", flush=True)
    _produce_window(lake, bootstrap, scratch)
    return "confluent-kafka producer (kbak replay unavailable)"


def _produce_window(lake: Lake, bootstrap: str, scratch: str) -> None:
    from confluent_kafka import Producer

    from pipeline.dev.sample import create_topics
    from pipeline.query.engine import connect

    create_topics(bootstrap, {scratch: TOPICS["payments"][0]})
    con = connect(lake)
    reader = con.execute(
        'SELECT "partition", key, value, epoch_ms("timestamp") AS ts FROM records WHERE topic = \'payments\' '
        "AND \"timestamp\" >= '2024-07-01' AND \"timestamp\" < '2024-10-01'"
    ).fetch_record_batch(100_000)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20})
    for batch in reader:
        cols = batch.to_pydict()
        for p, k, v, ts in zip(cols["partition"], cols["key"], cols["value"], cols["ts"], strict=True):
            while True:
                try:
                    producer.produce(scratch, value=v, key=k, partition=p, timestamp=ts)
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.poll(0)
    producer.flush(120)


def main() -> None:
    records = int(os.environ.get("KBAK_BENCH_QUERY_RECORDS", 5_400_000))
    base = Path(os.environ.get("KBAK_BENCH_DIR") or Path(tempfile.gettempdir()) / "kbak-bench")
    lake = build_lake(base / f"query-lake-{records}", records)
    with tempfile.TemporaryDirectory() as tmp:
        times, rows = time_query(lake, Path(tmp) / "activity.csv")
    query_s = statistics.median(times)
    print(
        f"(a) kbak query customer_activity ({CUSTOMER}, Q3 2024, payments): {rows} rows, "
        f"median {query_s:.2f}s of {len(times)} runs {[round(t, 2) for t in times]} (process start included)",
        flush=True,
    )
    api_s = statistics.median(api := time_python_api(lake))
    print(
        f"    the same via the Python API (connect + query): median {api_s:.2f}s {[round(t, 2) for t in api]}",
        flush=True,
    )
    replay_s, scan_s, found, how = restore_route(lake)
    restore_s = replay_s + scan_s
    print(
        f"(b) restore route: replay the quarter to a scratch topic ({how}) {replay_s:.1f}s "
        f"+ console-style scan {scan_s:.1f}s = {restore_s:.1f}s, {found} records found",
        flush=True,
    )
    verdict = "ok" if rows == found and restore_s / query_s >= 50 and query_s < 2 else "GOAL MISSED"
    print(f"ratio: kbak query is {restore_s / query_s:.0f}x faster (goal >= 50x, query < 2 s): {verdict}")
    print(f"       the Python API is {restore_s / api_s:.0f}x faster", flush=True)
    if rows != found:
        print(f"WARNING: the two routes disagree: query {rows} rows, restore scan {found} records")
    print("decoding: schema registry payloads (Avro) vs JSON, same records", flush=True)
    from pipeline.dev.bench import decode

    decode.main()
