"""Helpers the tests share: running the real CLI, producing tricky records, consuming them back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

TANSU_REASON = "the Tansu test broker cannot show this ({}); runs against Apache Kafka via KBAK_TEST_BOOTSTRAP"


@dataclass
class KafkaServer:
    bootstrap: str
    is_tansu: bool


def skip_on_tansu(kafka: KafkaServer, what: str) -> None:
    import pytest

    if kafka.is_tansu:
        pytest.skip(TANSU_REASON.format(what))


KBAK = str(Path(sys.executable).parent / "kbak")

# Kafka's UtilsTest.testMurmur2 vectors: the Java client's murmur2 hash of each key.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"": 275646681,
}


def run_kbak(*args: str, env: dict | None = None, timeout: float = 180, check: bool = False):
    """Run the installed ``kbak`` console script; returns the CompletedProcess (text mode)."""
    proc = subprocess.run(
        [KBAK, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kbak {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_json(*args: str, env: dict | None = None, timeout: float = 180):
    proc = run_kbak(*args, "--json", env=env, timeout=timeout, check=True)
    return json.loads(proc.stdout)


@dataclass(frozen=True)
class Rec:
    """A Kafka record as the tests compare them: every field the archive promises to keep."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int

    @classmethod
    def from_row(cls, r: dict) -> Rec:
        """A row of the archive (as ``to_pylist`` gives it) as a Rec."""
        headers = tuple((h["key"], h["value"]) for h in r["headers"])
        ts_ms = round(r["timestamp"].timestamp() * 1000)
        return cls(r["topic"], r["partition"], r["offset"], r["key"], r["value"], headers, ts_ms)

    @classmethod
    def from_message(cls, m) -> Rec:
        return cls(m.topic(), m.partition(), m.offset(), m.key(), m.value(), tuple(m.headers() or ()), m.timestamp()[1])


def content(recs: list[Rec]) -> list[tuple]:
    """What a replay must preserve, per partition in order: everything but topic and offset."""
    return [
        (r.partition, r.key, r.value, r.headers, r.timestamp_ms)
        for r in sorted(recs, key=lambda r: (r.partition, r.offset))
    ]


def produce(bootstrap: str, records: list[dict], **conf) -> None:
    """records: dicts with topic, value, and optional key, partition, headers, timestamp."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, **conf})
    errors: list = []
    for r in records:
        kwargs = {k: r[k] for k in ("key", "partition", "headers", "timestamp") if k in r}
        p.produce(r["topic"], value=r.get("value"), on_delivery=lambda e, m: e and errors.append(e), **kwargs)
    p.flush(30)
    assert not errors, errors


def consume_all(bootstrap: str, topic: str, partitions: int, timeout: float = 30, **conf) -> list[Rec]:
    """Every record of ``topic`` up to its end, via partition EOF (reliable on Tansu and Kafka)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-{time.time_ns()}",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **conf,
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[Rec] = []
    eof: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(eof) < partitions and time.monotonic() < deadline:
        for m in c.consume(1000, 0.5):
            if m.error():
                if m.error().code() == -191:  # _PARTITION_EOF
                    eof.add(m.partition())
                continue
            out.append(Rec.from_message(m))
    c.close()
    assert len(eof) == partitions, f"did not reach the end of {topic} in {timeout}s"
    return sorted(out, key=lambda r: (r.partition, r.offset))


def archive_rows(lake: str, storage_options: dict | None = None, topic: str | None = None) -> list[Rec]:
    """The archive's rows as Recs, read with deltalake directly (not through kbak)."""
    from deltalake import DeltaTable

    t = DeltaTable(lake, storage_options=storage_options).to_pyarrow_table()
    rows = [Rec.from_row(r) for r in t.to_pylist() if topic is None or r["topic"] == topic]
    return sorted(rows, key=lambda r: (r.topic, r.partition, r.offset))


def wait_until(cond, timeout: float = 120, what: str = "condition") -> None:
    """Poll ``cond`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached in {timeout:.0f}s")


def table_rows(lake) -> int:
    """Rows of the archive at its current version (0 while there is no table yet)."""
    from deltalake import DeltaTable

    try:
        return DeltaTable(str(lake)).count()
    except Exception:
        return 0


def one_line_error(proc) -> str:
    """The failure is one line, the last on stderr (progress lines may precede it), and no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stdout
    assert lines and lines[-1].startswith("kbak: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert sum(line.startswith("kbak: error:") for line in lines) == 1, proc.stderr
    return lines[-1]
