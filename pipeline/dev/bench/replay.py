"""Replay benchmark: ``kbak replay`` end to end vs a raw confluent-kafka producer, same broker, same run.

Both produce the same records (sample data: three topics, keys, JSON values, headers) with the same
producer settings (idempotent, ``acks=all``, every delivery report checked). The raw producer sends
from records already in memory; ``kbak replay`` is timed as a subprocess from start to exit, so it
includes opening the table, planning, reading and sorting the Parquet files, and producing. Both
report CPU seconds per GB (user + sys of the process) besides the rates. It also reports the replay
process's peak memory for the whole archive and for a one-week window.

``KBAK_BENCH_REPLAY_RECORDS`` sets the number of records (default 1,000,000).
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer

from pipeline.core.storage import Lake
from pipeline.dev.bench.measure import Usage, measured, run_process
from pipeline.dev.sample import SAMPLE_TOPICS, SampleRecord, create_topics, generate, produce
from pipeline.dev.servers import LocalBroker
from pipeline.ingest import IngestOptions, ingest
from pipeline.replay.produce import PRODUCER_DEFAULTS

START = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 90


def raw_produce(bootstrap: str, records: list[SampleRecord], suffix: str) -> Usage:
    """A plain producer loop sending ``records`` and receiving every delivery report."""
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS})
    failures: list = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(err)

    produce_ = producer.produce
    with measured() as usage:
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
    if failures:
        raise RuntimeError(f"raw producer: {len(failures)} failed deliveries, e.g. {failures[0]}")
    return usage


def run_replay(args: list[str]) -> Usage:
    """Wall, CPU and peak RSS of one ``kbak replay`` process."""
    kbak = str(Path(sys.executable).parent / "kbak")
    usage, _err = run_process([kbak, "replay", *args, "--quiet"], what="kbak replay")
    return usage


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

        raw = raw_produce(b.bootstrap, records, "-raw")
        del records  # the replay below reads the lake, not memory
        week = ["--from", "2024-02-01", "--to", "2024-02-07", "--topic-map", "payments=payments-week"]
        week_run = run_replay(["--lake", lake.uri, "-b", b.bootstrap, "--topic", "payments", *week, "--create-topics"])
        maps = [a for t in SAMPLE_TOPICS for a in ("--topic-map", f"{t}={t}-replay")]
        whole = run_replay(["--lake", lake.uri, "-b", b.bootstrap, *maps])

    print(f"{'':28s}{'records/s':>11s}{'MB/s':>8s}{'wall s':>8s}{'CPU s':>8s}{'CPU s/GB':>9s}")
    for label, u in (("raw producer (in memory)", raw), ("kbak replay (end to end)", whole)):
        rate = f"{n / u.wall:11,.0f}{payload / 1e6 / u.wall:8.1f}"
        print(f"{label:28s}{rate}{u.wall:8.2f}{u.cpu:8.2f}{u.per_gb(payload):9.1f}")
    print(
        f"ratio replay/raw: {raw.wall / whole.wall:.2f} (goal >= 0.8); in CPU time {raw.cpu / whole.cpu:.2f} "
        "(steadier on a shared machine)"
    )
    print(
        f"replay peak RSS: whole archive {whole.peak_rss / 1e6:.0f} MB (goal < 400 MB), "
        f"one-week window {week_run.peak_rss / 1e6:.0f} MB ({week_run.wall:.2f}s)"
    )
