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


_WORDS = tuple(
    " ".join(
        [
            "payment refund transfer card account customer merchant order invoice settlement review pending",
            "approved declined manual automatic monthly fee interest charge limit balance statement online store",
            "grocery travel fuel restaurant subscription service premium standard basic delivery express return",
            "exchange dispute chargeback verified flagged risk score device session login mobile web branch atm",
            "contactless recurring first last new existing update reminder notice",
        ]
    ).split()
)
_CITIES = ["Berlin", "Paris", "London", "Madrid", "Rome", "Vienna", "Warsaw", "Prague", "Lisbon", "Dublin", "Oslo"]
_MERCHANTS = ["Acme Grocers", "Globex Fuel", "Initech Travel", "Umbrella Pharmacy", "Stark Electronics", "Wayne Books"]
_AGENTS = [
    *(
        f"Mozilla/5.0 (Linux; Android {v}; SM-G99{v}B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/1{v}0.0.0.0 "
        "Mobile Safari/537.36"
        for v in range(8, 15)
    ),
    *(
        f"Mozilla/5.0 (iPhone; CPU iPhone OS 1{v}_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        f"Version/1{v}.0 Mobile/15E148 Safari/604.1"
        for v in range(4, 8)
    ),
]


def payment_event(i: int, rnd: random.Random, size: int = 1024) -> bytes:
    """One distinct JSON payment event of exactly ``size`` bytes (for ``size`` >= ~700).

    Every record differs (random ids, amounts, times, addresses, a free-text note from a small
    vocabulary), so a compressor finds what it finds in real topics (JSON keys, repeated
    vocabulary: about 0.2-0.25 of raw with zstd) instead of whole repeated payloads.
    """
    g, pick = rnd.getrandbits, rnd.choice
    head = (
        f'{{"event_id":"{g(32):08x}-{g(16):04x}-4{g(12):03x}-{g(16):04x}-{g(48):012x}",'
        f'"type":"payment.{pick(("authorized", "captured", "refunded", "declined"))}","seq":{i},'
        f'"ts":"2026-{1 + i % 12:02d}-{1 + g(4) % 28:02d}T{g(5) % 24:02d}:{g(6) % 60:02d}:{g(6) % 60:02d}.'
        f'{g(10) % 1000:03d}Z","customer":{{"id":"cust-{g(20):07d}","tier":"{pick(("basic", "plus", "premium"))}",'
        f'"country":"{pick(("DE", "FR", "GB", "ES", "IT", "AT", "PL"))}"}},'
        f'"amount":{{"value":{g(24) / 100:.2f},"currency":"{pick(("EUR", "USD", "GBP", "CHF"))}"}},'
        f'"merchant":{{"id":"m-{g(16):05d}","name":"{pick(_MERCHANTS)}","city":"{pick(_CITIES)}",'
        f'"mcc":{4000 + g(12)}}},'
        f'"card":{{"bin":"{400000 + g(17)}","last4":"{g(14) % 10000:04d}","exp":"{1 + g(4) % 12:02d}/{27 + g(3)}"}},'
        f'"device":{{"ip":"{10 + g(7)}.{g(8)}.{g(8)}.{g(8)}","ua":"{pick(_AGENTS)}","session":"{g(64):016x}"}},'
        f'"risk":{{"score":{rnd.random():.4f},"rules":[{",".join(str(g(10)) for _ in range(1 + g(2)))}]}},"note":"'
    )
    room = max(size - len(head) - 2, 0)
    note = " ".join(rnd.choices(_WORDS, k=room // 5 + 2))[:room]
    return (head + note + '"}').encode()


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
