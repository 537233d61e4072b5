"""Realistic audit-style sample data for ``make demo``, ``make bench`` and the tests.

Three kinds of topic a compliance team archives: ``payments`` (keyed by customer, JSON values),
``user-activity`` (what a user saw, keyed by user), ``account-state`` (compacted-style, with
tombstones). Records carry headers (a trace id, duplicates, a null-valued one), some have no key,
some have empty values, and timestamps span several days.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

DAY_MS = 86_400_000


@dataclass(frozen=True)
class SampleRecord:
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp_ms: int


def create_topics(bootstrap: str, topics: dict[str, int], extra: dict | None = None) -> None:
    """Create topics (name -> partitions), ignoring ones that exist already."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **(extra or {})})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(t, n, 1) for t, n in topics.items() if t not in existing]
    if not new:
        return
    for fut in admin.create_topics(new).values():
        fut.result(30)


def generate(records: int, start: datetime, days: int, seed: int = 7, customers: int = 200) -> Iterator[SampleRecord]:
    """``records`` records spread over ``days`` days from ``start`` across the three topics."""
    rnd = random.Random(seed)
    start_ms = int(start.replace(tzinfo=start.tzinfo or UTC).timestamp() * 1000)
    span = max(days, 1) * DAY_MS
    for i in range(records):
        ts = start_ms + (i * span) // max(records, 1) + rnd.randint(-5000, 5000)  # a little out of order
        ts = max(ts, start_ms)
        cust = f"customer-{rnd.randrange(customers):04d}"
        trace = [("trace-id", f"{rnd.getrandbits(64):016x}".encode())]
        kind = i % 10
        if kind < 5:
            value = {
                "txn_id": f"txn-{i:08d}",
                "customer_id": cust,
                "amount": round(rnd.uniform(1, 5000), 2),
                "currency": rnd.choice(["EUR", "USD", "GBP"]),
                "status": rnd.choice(["ok", "ok", "declined"]),
            }
            headers = trace + [("content-type", b"application/json"), ("source", b"ledger"), ("source", b"gateway")]
            yield SampleRecord("payments", i % 3, cust.encode(), json.dumps(value).encode(), headers, ts)
        elif kind < 8:
            user = f"user-{rnd.randrange(customers):04d}"
            value = {
                "user_id": user,
                "page": rnd.choice(["/balance", "/statements", "/profile", "/offers"]),
                "shown": [f"offer-{rnd.randrange(50)}" for _ in range(rnd.randrange(1, 4))],
            }
            key = None if kind == 7 and i % 3 == 0 else user.encode()
            headers = trace + [("consent", None)]
            yield SampleRecord("user-activity", i % 2, key, json.dumps(value).encode(), headers, ts)
        else:
            acct = f"acct-{rnd.randrange(customers):04d}"
            if kind == 9 and i % 4 == 1:
                value: bytes | None = None  # tombstone
            elif kind == 9 and i % 4 == 3:
                value = b""  # empty, not null
            else:
                value = json.dumps({"account": acct, "customer_id": cust, "state": "active"}).encode()
            yield SampleRecord("account-state", 0, acct.encode(), value, trace, ts)


SAMPLE_TOPICS = {"payments": 3, "user-activity": 2, "account-state": 1}


def produce(bootstrap: str, rows: Iterator[SampleRecord], extra: dict | None = None) -> int:
    """Produce records to their given partitions with their timestamps; returns how many."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20, "acks": "all", **(extra or {})}
    )
    failures: list[str] = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(str(err))

    n = 0
    for r in rows:
        while True:
            try:
                producer.produce(
                    r.topic,
                    value=r.value,
                    key=r.key,
                    partition=r.partition,
                    headers=r.headers,
                    timestamp=r.timestamp_ms,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                producer.poll(0.1)
        n += 1
    producer.flush(60)
    if failures:
        raise RuntimeError(f"{len(failures)} sample records failed: {failures[0]}")
    return n


def produce_sample(bootstrap: str, records: int = 3000, days: int = 5, start: datetime | None = None) -> int:
    create_topics(bootstrap, SAMPLE_TOPICS)
    start = start or (datetime.now(UTC) - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    return produce(bootstrap, generate(records, start, days))
