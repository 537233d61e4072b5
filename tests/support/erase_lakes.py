"""Shared by the erasure tests (no tests here): a lake whose subject is spread over topics, partitions,
days, compacted files and files removed from the current version, built through real ``kbak ingest``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from deltalake import DeltaTable

from pipeline.dev.sample import create_topics
from support.custody_lakes import ingest
from support.kbak_testing import Rec, produce, run_json

SUBJECT = "subject-4242"
D1_MS = 1_730_419_200_000  # 2024-11-01T00:00:00Z
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def is_subject(r: Rec) -> bool:
    """Whether a record is the subject's: by key, by the value's customer_id, or by its user header."""
    if r.key == SUBJECT.encode():
        return True
    if any(k == "user" and v == SUBJECT.encode() for k, v in r.headers):
        return True
    try:
        return json.loads(r.value or b"null").get("customer_id") == SUBJECT
    except (ValueError, AttributeError):
        return False


def _rec(topic: str, partition: int, i: int, ts: int, who: str, how: str) -> dict:
    """One record; ``how`` says where ``who`` appears: in the key, the JSON value or the header."""
    key = who if how == "key" else f"user-{i}"
    customer = who if how == "json" else f"user-{i}"
    header = who if how == "header" else f"user-{i}"
    value = json.dumps({"customer_id": customer, "n": i, "note": f"r{i}"}).encode()
    return {"topic": topic, "partition": partition, "key": key.encode(), "value": value,
            "headers": [("user", header.encode()), ("trace", b"t%d" % i)], "timestamp": ts}  # fmt: skip


def batch(topics: tuple[str, str], start: int, days: list[int], n: int, subject_every: int | None) -> list[dict]:
    out = []
    hows = ("key", "json", "header")
    for i in range(n):
        topic = topics[i % 2]
        partitions = 3 if topic == topics[0] else 2
        ts = D1_MS + days[i % len(days)] * DAY_MS + (i % 20) * HOUR_MS
        who = SUBJECT if subject_every and i % subject_every == 0 else f"user-{start + i}"
        out.append(_rec(topic, i % partitions, start + i, ts, who, hows[(i // 2) % 3]))
    return out


@dataclass
class EraseLake:
    lake: str
    topics: tuple[str, str]
    versions: dict[int, list[Rec]] = field(default_factory=dict)  # every row at each version, before erasure
    mid_time: str = ""  # an instant between versions 2 and 3 (ISO)
    mid_version: int = 2
    head: int = 0  # the newest version before erasure


def rows_at(lake: str, version: int) -> list[Rec]:
    t = DeltaTable(lake, version=version).to_pyarrow_table()
    return sorted((Rec.from_row(r) for r in t.to_pylist()), key=lambda r: (r.topic, r.partition, r.offset))


def build(kafka, lake: str, base: str) -> EraseLake:
    """Versions: 1-2 ingest (subject on days 1-4), then compaction, a delete of day 4, five small ingests."""
    topics = (f"{base}-a", f"{base}-b")
    create_topics(kafka.bootstrap, {topics[0]: 3, topics[1]: 2})
    pattern = f"{base}-.*"
    produce(kafka.bootstrap, batch(topics, 0, [0, 1, 2], 60, subject_every=7))
    ingest(kafka, pattern, lake)  # version 1
    produce(kafka.bootstrap, batch(topics, 100, [0, 2, 3], 40, subject_every=5))
    ingest(kafka, pattern, lake)  # version 2: the same days again, so compaction has files to merge
    time.sleep(1.1)
    mid = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    time.sleep(1.1)
    # Days 1 and 3 have two files per topic: compaction leaves versions 1-2's files only in history.
    run_json("compact", "--lake", lake, "--topics", pattern)
    # Another Delta writer removes day 4 (with the subject) from the current version.
    DeltaTable(lake).delete("date = '2024-11-04'")
    for run in range(5):  # more versions: a Delta checkpoint every 10
        produce(kafka.bootstrap, batch(topics, 200 + 10 * run, [5], 4, subject_every=None))
        ingest(kafka, pattern, lake)
    out = EraseLake(lake, topics, mid_time=mid)
    out.head = DeltaTable(lake).version()
    for v in range(out.head + 1):
        out.versions[v] = rows_at(lake, v)
    return out
