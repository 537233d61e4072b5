"""A lake with known contents for the query tests: known records produced to the real broker, then
archived with ``kbak ingest --once`` (twice, so time travel has two versions to tell apart)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import Producer
from deltalake import DeltaTable

from pipeline.dev.sample import create_topics
from support.kbak_testing import consume_all, produce, run_json


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


def jv(**fields) -> bytes:
    return json.dumps(fields).encode()


TRACE = [("trace-id", b"t-1"), ("consent", None), ("source", b"ledger"), ("source", b"gateway")]


@dataclass
class AuditLake:
    uri: str
    pay: str  # 2 partitions: customers, Q3 2024
    ua: str  # 1 partition: what users saw, around 2024-12-01
    gap: str  # 1 partition written transactionally: markers leave offset holes
    records: list[dict] = field(default_factory=list)  # every archived record, with its offset
    late: dict | None = None  # the record only the second ingest archived
    first_version: int = 0
    latest_version: int = 0

    def of(self, topic: str, *, latest: bool = True) -> list[dict]:
        rows = [r for r in self.records if r["topic"] == topic]
        if latest and self.late and self.late["topic"] == topic:
            rows.append(self.late)
        return rows

    def at(self, topic: str, partition: int, offset: int) -> dict:
        return next(
            r
            for r in [*self.records, self.late]
            if r["topic"] == topic and r["partition"] == partition and r["offset"] == offset
        )


def pay_records(topic: str) -> list[dict]:
    return [
        # partition 0
        dict(partition=0, key=b"customer-1", value=jv(customer_id="customer-1", amount=10), ts="2024-07-01T10:00:00"),
        dict(partition=0, key=b"customer-2", value=jv(customer_id="customer-2", note="Refund"), ts="2024-07-01T11:00"),
        dict(partition=0, key=b"customer-10", value=jv(customer_id="customer-10"), ts="2024-07-02T00:00:00"),
        dict(partition=0, key=b"customer-2", value=jv(customer_id="customer-1", note="refund"), ts="2024-08-01T09:30"),
        dict(partition=0, key=b"customer-1", value=jv(customer_id="customer-1"), ts="2024-06-30T23:59:59.999"),
        # partition 1
        dict(partition=1, key=None, value=jv(customer_id="customer-1", amount=30), ts="2024-08-15T00:00:00"),
        dict(partition=1, key=b"customer-1", value=b"\xff\x00 not json", ts="2024-09-30T23:59:59.999", headers=TRACE),
        dict(partition=1, key=b"customer-1", value=jv(customer_id="customer-1"), ts="2024-10-01T00:00:00"),
        dict(partition=1, key=b"customer-3", value=None, ts="2024-09-01T00:00:00"),  # tombstone
        dict(partition=1, key=b"customer-3", value=b"", ts="2024-09-02T00:00:00"),  # empty, not null
    ]


def ua_records(topic: str) -> list[dict]:
    return [
        dict(partition=0, key=b"user-7", value=jv(user_id="user-7", page="/balance"), ts="2024-12-01T00:00:00"),
        dict(partition=0, key=None, value=jv(user_id="user-7", page="/offers"), ts="2024-12-01T23:59:59.999"),
        dict(partition=0, key=b"user-7", value=jv(user_id="user-7", page="/profile"), ts="2024-12-02T00:00:00"),
        dict(partition=0, key=b"user-8", value=jv(user_id="user-8", page="/balance"), ts="2024-12-01T12:00:00"),
        dict(partition=0, key=b"user-7", value=jv(user_id="user-7", page="/x"), ts="2024-11-30T23:59:59.999"),
    ]


def _with_offsets(topic: str, recs: list[dict], start: dict[int, int] | None = None) -> list[dict]:
    next_offset = dict(start or {})
    out = []
    for r in recs:
        off = next_offset.get(r["partition"], 0)
        next_offset[r["partition"]] = off + 1
        out.append({"topic": topic, "offset": off, "headers": [], **r, "timestamp": ms(r["ts"])})
    return out


def _produce(bootstrap: str, recs: list[dict]) -> None:
    produce(
        bootstrap,
        [
            {
                "topic": r["topic"],
                "partition": r["partition"],
                "key": r["key"],
                "value": r["value"],
                "headers": r["headers"],
                "timestamp": r["timestamp"],
            }
            for r in recs
        ],
    )


def _produce_transactionally(bootstrap: str, topic: str) -> list[dict]:
    """Two transactions of 1 and 2 records: offsets 0, (marker 1), 2, 3, (marker 4)."""
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"kbak-test-{uuid.uuid4().hex[:8]}"})
    p.init_transactions(30)
    recs = []
    for batch in ([b"g0"], [b"g1", b"g2"]):
        p.begin_transaction()
        for v in batch:
            p.produce(topic, value=v, key=b"g", partition=0, timestamp=ms("2024-07-05T00:00:00"))
        p.commit_transaction(30)
    for off, v in zip((0, 2, 3), (b"g0", b"g1", b"g2"), strict=True):
        recs.append(
            dict(topic=topic, partition=0, offset=off, key=b"g", value=v, headers=[], timestamp=ms("2024-07-05"))
        )
    return recs


def build(bootstrap: str, path: str) -> AuditLake:
    suffix = uuid.uuid4().hex[:8]
    lake = AuditLake(uri=path, pay=f"qpay-{suffix}", ua=f"qua-{suffix}", gap=f"qgap-{suffix}")
    create_topics(bootstrap, {lake.pay: 2, lake.ua: 1, lake.gap: 1})
    pay = _with_offsets(lake.pay, pay_records(lake.pay))
    ua = _with_offsets(lake.ua, ua_records(lake.ua))
    _produce(bootstrap, pay + ua)
    gap = _produce_transactionally(bootstrap, lake.gap)
    lake.records = pay + ua + gap
    pattern = f".*-{suffix}"
    run_json("ingest", "-b", bootstrap, "--topics", pattern, "--lake", path, "--once")
    lake.first_version = DeltaTable(path).version()

    # A second ingest archives one more record: versions before and after it differ by exactly it.
    late = _with_offsets(
        lake.pay,
        [dict(partition=0, key=b"customer-1", value=jv(customer_id="customer-1", late=True), ts="2024-09-15T00:00")],
        start={0: 5},
    )
    _produce(bootstrap, late)
    lake.late = late[0]
    run_json("ingest", "-b", bootstrap, "--topics", pattern, "--lake", path, "--once")
    lake.latest_version = DeltaTable(path).version()

    # The offsets assumed above are the broker's.
    for topic, parts in ((lake.pay, 2), (lake.ua, 1), (lake.gap, 1)):
        got = sorted((m.partition, m.offset, m.value) for m in consume_all(bootstrap, topic, parts))
        assert got == sorted((r["partition"], r["offset"], r["value"]) for r in lake.of(topic)), topic
    return lake
