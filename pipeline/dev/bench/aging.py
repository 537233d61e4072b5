"""Aging benchmark: what many small commits (continuous ingest) cost as the archive ages, and compaction.

A lake of ``KBAK_BENCH_AGING_VERSIONS`` versions (default 20,000) is built through kbak's own commit
path (``pipeline.ingest.commit.commit_records``: fence, write, stage, commit with app transactions,
seal), each commit 25 records of one topic with 3 partitions, 30 s of record time apart, as a
continuous ingest worker makes them. Measured:

- per-commit time at 1k, 2k, 5k, 10k, 20k versions (those reached): the mean of 100 commits, in the
  least disturbed of the five 100-commit windows before the mark (the lowest mean, wall and CPU
  each), since other load on a shared machine comes in bursts that a single window may catch;
- the real CLI, process start included (median of 3 runs): ``kbak query`` of a selective query (one
  partition, 51 offsets of one day; checked to find them), and the same through the Python API; the
  same for the audit question "every record of customer X" (by key: no Delta statistics help);
  ``kbak list`` and ``kbak validate --full`` with no verified point, then (100 commits later)
  ``kbak validate`` and ``kbak list`` from the verified point;
- the same, and the per-commit time, after ``kbak compact``.

Knobs (env): KBAK_BENCH_AGING_VERSIONS, KBAK_BENCH_DIR (where the lake is built; removed afterwards
unless KBAK_BENCH_KEEP=1, which also keeps a copy from before compaction).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake import DeltaTable

from pipeline.core.schema import RECORD_SCHEMA
from pipeline.core.storage import Lake
from pipeline.custody.verified import POINT
from pipeline.ingest.appender import LogAppender
from pipeline.ingest.commit import commit_records, ensure_table

TOPIC = "payments"
PARTITIONS = 3
PER_COMMIT = 25
CLUSTER = "bench-cluster"
START = datetime(2024, 1, 1, tzinfo=UTC)
MARKS = (1_000, 2_000, 5_000, 10_000, 20_000)
CUSTOMER = 42
KBAK = str(Path(sys.executable).parent / "kbak")


def _batch(commit: int, next_offset: np.ndarray) -> pa.Table:
    part = (np.arange(PER_COMMIT) % PARTITIONS).astype(np.int32)
    offsets = np.empty(PER_COMMIT, dtype=np.int64)
    for p in range(PARTITIONS):
        idx = np.flatnonzero(part == p)
        offsets[idx] = next_offset[p] + np.arange(idx.size)
        next_offset[p] += idx.size
    stamp = START + timedelta(seconds=30 * commit)
    ts = pa.array([stamp] * PER_COMMIT, pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "topic": [TOPIC] * PER_COMMIT,
            "partition": part,
            "offset": offsets,
            "timestamp": ts,
            "timestamp_type": ["create"] * PER_COMMIT,
            "key": [f"customer-{(commit * PER_COMMIT + i) % 5000:05d}".encode() for i in range(PER_COMMIT)],
            "value": [b'{"amount_cents": 1234, "currency": "EUR", "status": "ok"}'] * PER_COMMIT,
            "headers": [[]] * PER_COMMIT,
            "date": ts.cast(pa.date32()),
            "source_cluster": [CLUSTER] * PER_COMMIT,
            "ingested_at": ts,
        },
        schema=RECORD_SCHEMA,
    )


def _commit_many(lake: Lake, dt: DeltaTable, first: int, count: int, state: dict) -> list[tuple[float, float]]:
    """``count`` commits continuing the stream; each commit's wall time and process CPU time (s).

    The CPU time (every thread: delta-rs works on its own) is what other load on the machine disturbs least.
    Like an ingest worker's committer, the stream keeps its ``LogAppender`` across commits (in ``state``).
    """
    if state.get("log") is None:
        state["log"] = LogAppender.open(lake, dt)
    log = state["log"]
    times = []
    for c in range(first, first + count):
        table = _batch(c, state["next_offset"])
        t0, c0 = time.perf_counter(), time.process_time()
        expected = dict(state["expected"])
        r = commit_records(lake, dt, table, expected, source_cluster=CLUSTER, backup_id="aging", log=log)
        times.append((time.perf_counter() - t0, time.process_time() - c0))
        state["expected"].update(r.committed)
    return times


def _mean_ms(times: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean wall and CPU milliseconds per commit."""
    n = max(1, len(times))
    return 1000 * sum(t[0] for t in times) / n, 1000 * sum(t[1] for t in times) / n


def build(path: Path, versions: int) -> tuple[Lake, dict, dict[int, tuple[float, float]]]:
    """A fresh lake of ``versions`` versions; per-commit wall and CPU time (ms) at each mark reached."""
    lake = Lake.at(path)
    dt = ensure_table(lake)
    state = {"next_offset": np.zeros(PARTITIONS, dtype=np.int64), "expected": {}}
    per_commit: dict[int, tuple[float, float]] = {}
    done = dt.version()
    started = time.perf_counter()
    while done < versions:
        step = min(500, versions - done)
        times = _commit_many(lake, dt, done, step, state)
        done += step
        for mark in MARKS:
            if done - step < mark <= done:
                end = len(times) - (done - mark)
                windows = [_mean_ms(times[start : start + 100]) for start in range(max(0, end - 500), end, 100)]
                per_commit[mark] = (min(w[0] for w in windows), min(w[1] for w in windows))
        wall, cpu = _mean_ms(times[-100:])
        elapsed = time.perf_counter() - started
        print(f"  {done:,} versions, {wall:.1f} ms/commit (CPU {cpu:.1f} ms), {elapsed:.0f} s", flush=True)
    return lake, state, per_commit


def _cli(*args: str, runs: int = 1) -> float:
    """Wall time of the real CLI (process start included); the median of ``runs`` runs."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run([KBAK, *args], capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode not in (0, 1):  # validate may warn; anything worse is a failed benchmark
            raise RuntimeError(f"kbak {' '.join(args)} failed: {proc.stderr.strip()}")
    return statistics.median(times)


def selective_query(state: dict) -> tuple[str, int]:
    """The selective query (51 offsets of partition 1, in the day of the middle commit) and its row count."""
    per_commit = int(np.count_nonzero(np.arange(PER_COMMIT) % PARTITIONS == 1))
    middle = int(state["next_offset"][1] // per_commit) // 2  # a commit in the middle of the stream
    day = (START + timedelta(seconds=30 * middle)).date().isoformat()
    lo = middle * per_commit  # partition 1's first offset in that commit
    sql = (
        f'select "offset", key from records where "date" = DATE \'{day}\' and "partition" = 1 '
        f'and "offset" between {lo} and {lo + 50}'
    )
    return sql, 51


def customer_query(state: dict) -> tuple[str, int]:
    """The audit question "every record of customer X" (by key) and its row count.

    Delta keeps no statistics on keys (kbak's ``delta.dataSkippingStatsColumns`` leaves binary columns
    out), so this query reads every data file: what compaction changes most.
    """
    total = int(state["next_offset"].sum())  # record j has key customer-{j % 5000}
    sql = f"select \"offset\", key from records where key = 'customer-{CUSTOMER:05d}'::BLOB"
    return sql, len(range(CUSTOMER, total, 5000))


def _rows(*args: str) -> int:
    """How many rows ``kbak query ... -f json`` returned (the benchmark checks its query finds them)."""
    proc = subprocess.run([KBAK, *args], capture_output=True, text=True, check=True)
    return len(json.loads(proc.stdout))


def _in_process(lake: Lake, sql: str, runs: int) -> float:
    """The same query through the Python API (``engine.connect`` + the SQL): no process start, no imports."""
    from pipeline.query.engine import connect

    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        con = connect(lake, audit=False, only_for=sql)  # as kbak query does
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - t0)
        con.close()
    return statistics.median(times)


def _time_query(lake: Lake, name: str, sql: str, want: int) -> tuple[float, float]:
    """A query's CLI and API times (median of 3), once checked to find its ``want`` rows."""
    found = _rows("query", "--lake", lake.uri, "--sql", sql, "-f", "json")
    if found != want:
        raise RuntimeError(f"the {name} query found {found} rows, not {want}: {sql}")
    return _cli("query", "--lake", lake.uri, "--sql", sql, "-f", "json", runs=3), _in_process(lake, sql, runs=3)


def measure(lake: Lake, state: dict, label: str) -> dict:
    """Query, list and validate with no verified point; then, 100 commits later, from the point."""
    Path(lake.uri, POINT).unlink(missing_ok=True)
    out = {"label": label, "files": len(DeltaTable(lake.uri).file_uris())}
    out["query_s"], out["query_api_s"] = _time_query(lake, "selective", *selective_query(state))
    out["customer_s"], out["customer_api_s"] = _time_query(lake, "customer", *customer_query(state))
    out["list_full_s"] = _cli("list", "--lake", lake.uri, "--format", "json", runs=3)
    out["validate_full_s"] = _cli("validate", "--lake", lake.uri, "--full", "--format", "json", runs=3)
    dt = DeltaTable(lake.uri)
    _commit_many(lake, dt, dt.version(), 100, state)  # what continuous ingest adds meanwhile
    out["validate_s"] = _cli("validate", "--lake", lake.uri, "--format", "json")  # from the point on
    out["list_s"] = _cli("list", "--lake", lake.uri, "--format", "json", runs=3)
    print(
        f"  {label}: {out['files']:,} files; query {out['query_s']:.2f} s (API {out['query_api_s']:.2f} s); "
        f"customer query {out['customer_s']:.2f} s (API {out['customer_api_s']:.2f} s); "
        f"list {out['list_full_s']:.2f} s, "
        f"from the verified point {out['list_s']:.2f} s; validate --full {out['validate_full_s']:.2f} s, "
        f"100 commits later from the verified point {out['validate_s']:.2f} s",
        flush=True,
    )
    return out


def _mb(files) -> float:
    return sum(f.stat().st_size for f in files) / 1e6


def checkpoint_files(path: Path) -> list[Path]:
    """The Delta checkpoints of the lake at ``path``."""
    return sorted((path / "_delta_log").glob("*.checkpoint.parquet"))


def open_ms(path: Path, version: int | None, runs: int = 3) -> float:
    """Median time to open the table (as of ``version``: time travel), in ms."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        DeltaTable(str(path), version=version)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def log_storage(path: Path, label: str, old_version: int) -> None:
    """Checkpoints, JSON log entries and data on disk; opening an old version (time travel), median of 3."""
    checkpoints = checkpoint_files(path)
    data = [f for f in path.rglob("*.parquet") if "_delta_log" not in f.parts and "_kbak" not in f.parts]
    print(
        f"  {label}: {len(checkpoints):,} checkpoints, {_mb(checkpoints):,.1f} MB; JSON log "
        f"{_mb((path / '_delta_log').glob('*.json')):,.1f} MB; data {_mb(data):,.1f} MB; "
        f"open as of version {old_version:,}: {open_ms(path, old_version):.0f} ms",
        flush=True,
    )


def main() -> None:
    versions = int(os.environ.get("KBAK_BENCH_AGING_VERSIONS", "20000"))
    root = Path(os.environ.get("KBAK_BENCH_DIR", tempfile.gettempdir()))
    path = Path(tempfile.mkdtemp(dir=root, prefix="kbak-bench-aging-"))
    print(f"building {versions:,} versions of {PER_COMMIT}-record commits at {path}", flush=True)
    lake, state, per_commit = build(path, versions)
    for mark, (wall, cpu) in sorted(per_commit.items()):
        print(f"  per-commit time at {mark:,} versions: {wall:.1f} ms (CPU {cpu:.1f} ms)", flush=True)
    first, last = min(per_commit, default=0), max(per_commit, default=0)
    if last > first:  # two marks reached (a run of under 2,000 versions has no ratio to show)
        wall, cpu = (per_commit[last][i] / per_commit[first][i] for i in (0, 1))
        print(f"  per-commit time at {last:,} versions against {first:,}: {cpu:.2f}x in CPU ({wall:.2f}x wall)")
    before = measure(lake, state, "before compaction")
    if os.environ.get("KBAK_BENCH_KEEP") == "1":
        shutil.copytree(path, f"{path}-before-compact")
    t0 = time.perf_counter()
    _cli("compact", "--lake", lake.uri)
    print(f"  kbak compact: {time.perf_counter() - t0:.1f} s", flush=True)
    after = measure(lake, state, "after compaction")
    dt = DeltaTable(lake.uri)
    wall, cpu = _mean_ms(_commit_many(lake, dt, dt.version(), 100, state))
    print(f"  per-commit time after compaction: {wall:.1f} ms (CPU {cpu:.1f} ms)", flush=True)
    old = versions // 2 + 5  # between two checkpoints
    log_storage(path, "before vacuum", old)
    t0 = time.perf_counter()
    _cli("vacuum", "--lake", lake.uri, "--now", (datetime.now(UTC) + timedelta(days=2)).isoformat())
    print(f"  kbak vacuum (two days on: superseded checkpoints go): {time.perf_counter() - t0:.1f} s", flush=True)
    log_storage(path, "after vacuum", old)
    wall, cpu = _mean_ms(_commit_many(lake, dt, dt.version(), 100, state))
    print(f"  per-commit time after vacuum: {wall:.1f} ms (CPU {cpu:.1f} ms)", flush=True)
    print(f"  selective query speed-up from compaction: {before['query_s'] / after['query_s']:.1f}x", flush=True)
    print(f"  customer query speed-up from compaction: {before['customer_s'] / after['customer_s']:.1f}x", flush=True)
    if os.environ.get("KBAK_BENCH_KEEP") == "1":
        print(f"  kept the lake at {path}", flush=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
