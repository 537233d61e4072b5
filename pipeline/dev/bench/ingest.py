"""Ingest benchmark: ``kbak ingest --once`` against the serial limit measured in the same run.

``KBAK_BENCH_RECORDS`` (default 600,000) distinct JSON payment events of 1 KiB, keyed by customer,
with two headers, over 8 partitions (realistic payloads: zstd keeps about a fifth of them, where
repeated payloads would compress unrealistically well). On the same broker, in the same run:

- raw ``consume()``: a plain confluent-kafka loop reading every record, no processing;
- pyarrow alone: the same records (read back from kbak's files) written as zstd Parquet at the
  same level, with kbak's writer options, timed on their own;
- the serial limit: raw consume time + pyarrow's write time (what no archiver can avoid);
- ``kbak ingest --once`` end to end (a subprocess, start to committed table), with
  ``KBAK_BENCH_WORKERS=N`` also ``--workers N`` into a second lake.

Each line gives records/s, MB/s and CPU seconds per GB (user + sys of the process), which a busy
shared machine disturbs much less than wall time. ``KBAK_BENCH_LEVEL`` sets the zstd level
(default: kbak's). ``KBAK_PROFILE=1`` (``make bench BENCH=ingest PROFILE=1``) makes kbak print where
its time went, per stage.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.core import defaults
from pipeline.dev.bench.measure import Usage, measured, run_process
from pipeline.dev.sample import create_topics, payment_event
from pipeline.ingest.writer import parquet_options

TOPIC = "bench-ingest"
PARTITIONS = 8
VALUE_SIZE = 1024


def produce_topic(bootstrap: str, records: int) -> int:
    """Produce ``records`` distinct events; returns their raw size (key + value + header bytes)."""
    create_topics(bootstrap, {TOPIC: PARTITIONS})
    p = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1 << 20, "compression.type": "lz4", "acks": 1}
    )
    rnd = random.Random(1)
    raw = 0
    for i in range(records):
        v = payment_event(i, rnd, VALUE_SIZE)
        k = b"cust-%07d" % rnd.getrandbits(20)
        h = [("trace-id", b"%016x" % rnd.getrandbits(64)), ("content-type", b"application/json")]
        while True:
            try:
                p.produce(TOPIC, value=v, key=k, headers=h, partition=i % PARTITIONS)
                break
            except BufferError:
                p.poll(0.05)
        raw += len(v) + len(k) + 8 + 16 + 12 + 16
    p.flush(300)
    return raw


def raw_consume(bootstrap: str, records: int) -> Usage:
    """A plain consume() loop reading every record, no processing."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-raw",
            "enable.partition.eof": True,
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": 8 << 20,
            "queued.max.messages.kbytes": 256 << 10,
        }
    )
    got, eof = 0, set()
    with measured() as usage:
        c.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
        while len(eof) < PARTITIONS:
            for m in c.consume(20_000, 1.0):
                if m.error():
                    eof.add(m.partition())
                else:
                    got += 1
    c.close()
    assert got == records, (got, records)
    return usage


def kbak_ingest(bootstrap: str, lake: Path, level: int, workers: int = 1, profile: bool = False) -> tuple[Usage, str]:
    """``kbak ingest --once`` as a subprocess, start to committed table; with ``profile``, its stage table."""
    kbak = str(Path(sys.executable).parent / "kbak")
    argv = [kbak, "ingest", "-b", bootstrap, "--topics", TOPIC, "--lake", str(lake), "--once", "--quiet"]
    argv += ["--compression-level", str(level)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if k != "KBAK_PROFILE"}
    if profile:
        env["KBAK_PROFILE"] = "1"
    return run_process(argv, env=env, what="kbak ingest")


def pyarrow_write(lake: Path, level: int) -> tuple[Usage, int]:
    """pyarrow alone writing kbak's records (read back from its files) with kbak's writer options."""
    total, records = Usage(), 0
    for path in sorted(lake.glob("topic=*/date=*/*.parquet")):
        table = pq.read_table(path)
        records += table.num_rows
        with measured() as usage:
            pq.write_table(table, io.BytesIO(), row_group_size=65_536, **parquet_options(level))
        total += usage
    return total, records


def main() -> None:
    from pipeline.dev.servers import LocalBroker

    records = int(os.environ.get("KBAK_BENCH_RECORDS", "600000"))
    level = int(os.environ.get("KBAK_BENCH_LEVEL", str(defaults.COMPRESSION_LEVEL)))
    workers = int(os.environ.get("KBAK_BENCH_WORKERS", "1"))
    profile = os.environ.get("KBAK_PROFILE", "") not in ("", "0")
    workdir = Path(tempfile.mkdtemp(prefix="kbak-bench-"))
    try:
        with LocalBroker() as broker:
            t0 = time.perf_counter()
            raw = produce_topic(broker.bootstrap, records)
            print(
                f"produced {records:,} distinct records ({raw / 1e6:,.0f} MB raw) in {time.perf_counter() - t0:.1f}s;"
                f" zstd level {level}",
                flush=True,
            )
            consume = raw_consume(broker.bootstrap, records)
            kbak, stderr = kbak_ingest(broker.bootstrap, workdir / "lake", level, profile=profile)
            scaled = None
            if workers > 1:
                scaled, _ = kbak_ingest(broker.bootstrap, workdir / "lake-workers", level, workers)
        write, written = pyarrow_write(workdir / "lake", level)
        assert written == records, (written, records)
        on_disk = sum(f.stat().st_size for f in (workdir / "lake").glob("topic=*/date=*/*.parquet"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    limit = Usage(consume.wall + write.wall, consume.cpu + write.cpu)
    print(f"{'':34s}{'records/s':>11s}{'MB/s':>8s}{'wall s':>8s}{'CPU s':>8s}{'CPU s/GB':>9s}")
    rows = [
        ("raw consume()", consume),
        (f"pyarrow write, zstd {level}", write),
        ("serial limit (consume + write)", limit),
        ("kbak ingest --once", kbak),
    ]
    if scaled is not None:
        rows.append((f"kbak ingest --once --workers {workers}", scaled))
    for label, u in rows:
        rate = f"{records / u.wall:11,.0f}{raw / u.wall / 1e6:8.1f}"
        print(f"{label:34s}{rate}{u.wall:8.2f}{u.cpu:8.2f}{u.per_gb(raw):9.1f}")
    print(f"ratio kbak/raw consume:   {consume.wall / kbak.wall:.2f}  (goal >= 0.5)")
    print(f"ratio kbak/serial limit:  {limit.wall / kbak.wall:.2f}  (goal >= 0.8)")
    print(f"CPU kbak/serial limit:    {kbak.cpu / limit.cpu:.2f}  (CPU seconds kbak spends per second the limit needs)")
    if scaled is not None:
        print(
            f"--workers {workers} vs 1:          {kbak.wall / scaled.wall:.2f}x wall, "
            f"CPU s/GB {scaled.per_gb(raw):.1f} vs {kbak.per_gb(raw):.1f}, peak RSS (all processes) "
            f"{scaled.peak_rss / 1e6:.0f} MB"
        )
    print(f"kbak peak RSS:            {kbak.peak_rss / 1e6:.0f} MB")
    print(f"bytes on disk / raw:      {on_disk / 1e6:.0f} MB / {raw / 1e6:.0f} MB = {on_disk / raw:.3f}")
    if profile:
        print(stderr.rstrip())


if __name__ == "__main__":
    main()
