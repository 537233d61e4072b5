"""Retention policies: which topics are kept how many days, stored in the lake and changed on the record.

Each change is a record-only commit (operation ``retention-policy``) whose manifest body holds the
whole new set of policies; ``_kbak/retention/policies.json`` holds the same set for quick reading.
A topic matched by no policy is kept forever; where several match, the longest retention wins.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import pyarrow as pa

from pipeline.core.errors import KbakError
from pipeline.core.storage import Lake
from pipeline.core.table import open_table
from pipeline.custody.operation import commit_operation, created_by
from pipeline.lifecycle.files import topic_pattern

POLICY_DOC = "_kbak/retention/policies.json"
OPERATION = "retention-policy"


@dataclass(frozen=True)
class Policy:
    topics: str  # full-match regex over topic names
    days: int
    reason: str | None = None
    set_at: str | None = None
    set_by: str | None = None

    def matches(self, topic: str) -> bool:
        return topic_pattern(self.topics).fullmatch(topic) is not None


def load_policies(lake: Lake) -> list[Policy]:
    if not lake.exists(POLICY_DOC):
        return []
    doc = json.loads(lake.read_bytes(POLICY_DOC))
    return [Policy(**p) for p in doc.get("policies", [])]


def check_days(days: int) -> int:
    if days <= 0:
        raise KbakError(f"--days {days}: a retention is a positive number of days")
    return days


def set_policy(lake: Lake, topics: str, days: int, reason: str | None = None) -> dict:
    """Add the policy for ``topics`` (replacing one with the same regex); one commit in the chain."""
    check_days(days)
    topic_pattern(topics)
    dt = open_table(lake)
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    new = Policy(topics, days, reason, now, created_by())
    policies = [p for p in load_policies(lake) if p.topics != topics] + [new]
    body = {"policies": [asdict(p) for p in policies], "change": {"set": asdict(new)}}
    version = commit_operation(lake, dt, OPERATION, body)
    lake.write_bytes(POLICY_DOC, json.dumps({"version": version, "policies": body["policies"]}, indent=2).encode())
    matched = [t for t in lake_topics(dt) if new.matches(t)]
    warning = None if matched else f"--topics {topics!r} matches no topic archived in {lake.uri} (yet)"
    return {"lake": lake.uri, "version": version, "policy": asdict(new), "matches": matched, "warning": warning}


def effective(policies: list[Policy], topic: str) -> tuple[Policy | None, list[Policy]]:
    """The policy that governs ``topic`` (longest retention among those matching) and all that match."""
    matching = [p for p in policies if p.matches(topic)]
    return (max(matching, key=lambda p: p.days) if matching else None), matching


def lake_topics(dt) -> list[str]:
    actions = pa.table(dt.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return []
    return sorted(set(actions.column("partition.topic").to_pylist()))


def show(lake: Lake) -> dict:
    """The policies, what each matches, and per archived topic the retention that applies and why."""
    policies = load_policies(lake)
    topics = lake_topics(open_table(lake))
    per_topic = []
    for t in topics:
        winner, matching = effective(policies, t)
        per_topic.append(
            {
                "topic": t,
                "days": winner.days if winner else None,
                "policy": winner.topics if winner else None,
                "matched_by": [p.topics for p in matching],
                "note": _note(winner, matching),
            }
        )
    return {
        "lake": lake.uri,
        "policies": [{**asdict(p), "matches": [t for t in topics if p.matches(t)]} for p in policies],
        "topics": per_topic,
        "unmatched_policies": [p.topics for p in policies if not any(p.matches(t) for t in topics)],
    }


def _note(winner: Policy | None, matching: list[Policy]) -> str:
    if winner is None:
        return "no policy: kept forever"
    if len(matching) > 1:
        others = ", ".join(f"{p.topics!r} ({p.days} days)" for p in matching if p is not winner)
        return f"{len(matching)} policies match; the longest retention wins (also: {others})"
    return "one policy matches"
