"""Ingest benchmark: raw ``consume()`` vs ``kbak ingest --once`` on the same broker, same run.

``KBAK_BENCH_RECORDS`` (default 1,000,000) records of 1 KiB with two headers over 8 partitions.
Prints records/s and MB/s of both, their ratio, kbak's peak RSS, and bytes on disk vs raw bytes.
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.dev.sample import create_topics
from pipeline.dev.servers import LocalBroker

TOPIC = "bench-ingest"
PARTITIONS = 8
VALUE_SIZE = 1024


def _payloads(n: int = 2000) -> list[bytes]:
    rnd = random.Random(1)
    out = []
    for i in range(n):
        head = f'{{"event":"payment","customer":"customer-{i % 500:04d}","amount":{rnd.uniform(1, 999):.2f},"blob":"'
        body = "".join(rnd.choice("0123456789abcdef") for _ in range(VALUE_SIZE - len(head) - 2))
        out.append((head + body + '"}').encode())
    return out


def produce_topic(bootstrap: str, records: int) -> int:
    create_topics(bootstrap, {TOPIC: PARTITIONS})
    p = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1 << 20, "compression.type": "lz4", "acks": 1}
    )
    values = _payloads()
    raw = 0
    for i in range(records):
        v = values[i % len(values)]
        k = b"customer-%04d" % (i % 500)
        h = [("trace-id", b"%016x" % i), ("content-type", b"application/json")]
        while True:
            try:
                p.produce(TOPIC, value=v, key=k, headers=h, partition=i % PARTITIONS)
                break
            except BufferError:
                p.poll(0.05)
        raw += len(v) + len(k) + 8 + 16 + 12 + 16
    p.flush(300)
    return raw


def raw_consume(bootstrap: str, records: int) -> float:
    """Seconds for a plain consume() loop to read every record, no processing."""
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
    c.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    got, eof = 0, set()
    start = time.perf_counter()
    while len(eof) < PARTITIONS:
        for m in c.consume(20_000, 1.0):
            if m.error():
                eof.add(m.partition())
            else:
                got += 1
    elapsed = time.perf_counter() - start
    c.close()
    assert got == records, (got, records)
    return elapsed


def kbak_ingest(bootstrap: str, lake: Path) -> tuple[float, int]:
    """Seconds for ``kbak ingest --once`` (a subprocess, start to committed table) and its peak RSS."""
    kbak = str(Path(sys.executable).parent / "kbak")
    start = time.perf_counter()
    subprocess.run(
        [kbak, "ingest", "-b", bootstrap, "--topics", TOPIC, "--lake", str(lake), "--once", "--quiet"], check=True
    )
    elapsed = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, peak_kb * 1024


def main() -> None:
    records = int(os.environ.get("KBAK_BENCH_RECORDS", "1000000"))
    workdir = Path(tempfile.mkdtemp(prefix="kbak-bench-"))
    try:
        with LocalBroker() as broker:
            t0 = time.perf_counter()
            raw = produce_topic(broker.bootstrap, records)
            print(f"produced {records:,} records ({raw / 1e6:,.0f} MB raw) in {time.perf_counter() - t0:.1f}s")
            consume_s = raw_consume(broker.bootstrap, records)
            ingest_s, peak = kbak_ingest(broker.bootstrap, workdir / "lake")
        on_disk = sum(f.stat().st_size for f in (workdir / "lake").rglob("*.parquet"))
        rate_raw, rate_kbak = records / consume_s, records / ingest_s
        print(
            f"raw consume():       {rate_raw:>12,.0f} records/s {raw / consume_s / 1e6:>8.1f} MB/s ({consume_s:.1f}s)"
        )
        print(f"kbak ingest --once:  {rate_kbak:>12,.0f} records/s {raw / ingest_s / 1e6:>8.1f} MB/s ({ingest_s:.1f}s)")
        print(f"ratio ingest/raw:    {rate_kbak / rate_raw:.2f}  (goal >= 0.6)")
        print(f"kbak peak RSS:       {peak / 1e6:.0f} MB  (goal < 500 MB)")
        print(f"bytes on disk / raw: {on_disk / 1e6:.0f} MB / {raw / 1e6:.0f} MB = {on_disk / raw:.2f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
