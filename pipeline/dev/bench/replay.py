"""Replay benchmark: ``kbak replay`` end to end vs a raw confluent-kafka producer, same broker, same run.

Both produce the same records (sample data: three topics, keys, JSON values, headers) with the same
producer settings (idempotent, ``acks=all``, every delivery report checked). The raw producer sends
from records already in memory; ``kbak replay`` is timed as a subprocess from start to exit, so it
includes opening the table, planning, reading and sorting the Parquet files, and producing. It also
reports the replay process's peak memory for the whole archive and for a one-week window.

``KBAK_BENCH_REPLAY_RECORDS`` sets the number of records (default 1,000,000).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer

from pipeline.core.storage import Lake
from pipeline.dev.sample import SAMPLE_TOPICS, SampleRecord, create_topics, generate, produce
from pipeline.dev.servers import LocalBroker
from pipeline.ingest import IngestOptions, ingest
from pipeline.replay.produce import PRODUCER_DEFAULTS

START = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 90


def raw_produce(bootstrap: str, records: list[SampleRecord], suffix: str) -> float:
    """Seconds for a plain producer loop to send ``records`` and receive every delivery report."""
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS})
    failures: list = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(err)

    produce_ = producer.produce
    t0 = time.perf_counter()
    for r in records:
        while True:
            try:
                produce_(
                    r.topic + suffix,
                    r.value,
                    r.key,
                    partition=r.partition,
                    on_delivery=on_delivery,
                    timestamp=r.timestamp_ms,
                    headers=r.headers,
                )
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush()
    elapsed = time.perf_counter() - t0
    if failures:
        raise RuntimeError(f"raw producer: {len(failures)} failed deliveries, e.g. {failures[0]}")
    return elapsed


def run_replay(args: list[str]) -> tuple[float, int]:
    """Wall-clock seconds and peak RSS (bytes) of one ``kbak replay`` process.

    The peak is the kernel's VmHWM for the process, sampled until it exits (``ru_maxrss`` would
    include this benchmark's own memory, inherited across fork).
    """
    kbak = str(Path(sys.executable).parent / "kbak")
    peak = 0
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([kbak, "replay", *args, "--quiet"], stdout=subprocess.DEVNULL, stderr=err)
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                hwm = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
                peak = max(peak, int(hwm.split()[1]) * 1024)
            except (OSError, StopIteration):
                pass
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"kbak replay failed: {err.read().decode().strip()}")
    return elapsed, peak


def main() -> None:
    n = int(os.environ.get("KBAK_BENCH_REPLAY_RECORDS", "1000000"))
    records = list(generate(n, START, DAYS))
    payload = sum(len(r.key or b"") + len(r.value or b"") for r in records)
    print(f"{n:,} sample records over {DAYS} days, {payload / 1e6:.1f} MB key+value, 3 topics", flush=True)
    with tempfile.TemporaryDirectory(prefix="kbak-bench-replay-") as tmp, LocalBroker(log=Path(tmp) / "tansu.log") as b:
        create_topics(b.bootstrap, SAMPLE_TOPICS)
        produce(b.bootstrap, iter(records))
        lake = Lake.at(Path(tmp) / "lake")
        ingest(IngestOptions(bootstrap_servers=b.bootstrap, lake=lake, topics=list(SAMPLE_TOPICS), once=True))
        for suffix in ("-raw", "-replay"):
            create_topics(b.bootstrap, {t + suffix: p for t, p in SAMPLE_TOPICS.items()})

        raw_s = raw_produce(b.bootstrap, records, "-raw")
        del records  # the replay below reads the lake, not memory
        week = ["--from", "2024-02-01", "--to", "2024-02-07", "--topic-map", "payments=payments-week"]
        _s, week_peak = run_replay(
            ["--lake", lake.uri, "-b", b.bootstrap, "--topic", "payments", *week, "--create-topics"]
        )
        maps = [a for t in SAMPLE_TOPICS for a in ("--topic-map", f"{t}={t}-replay")]
        replay_s, peak = run_replay(["--lake", lake.uri, "-b", b.bootstrap, *maps])

    raw_rate, replay_rate = n / raw_s, n / replay_s
    for label, rate, secs in (
        ("raw producer (in memory)", raw_rate, raw_s),
        ("kbak replay (end to end)", replay_rate, replay_s),
    ):
        print(f"{label}:  {rate:>10,.0f} records/s  {payload / 1e6 / secs:7.1f} MB/s  ({secs:.2f}s)")
    print(f"ratio replay/raw: {replay_rate / raw_rate:.2f} (goal >= 0.7)")
    print(f"replay peak RSS: whole archive {peak / 1e6:.0f} MB, one-week window {week_peak / 1e6:.0f} MB")
