"""Case holds: records preserved for litigation, which erasure refuses and retention keeps.

A case selects records by topic (full-match regex), an optional time window and optional keys. Opening
and releasing a case are record-only commits (operations ``case-hold`` / ``case-release``) whose
custody manifest holds the case's new state, so the chain says who held what, when and why; the
current state is also kept in ``_kbak/cases/<id>.json`` for fast reads (``kbak validate`` checks it
against the chain). Keys are stored only as HMAC-SHA-256 under the lake's erasure secret
(``pipeline.core.subject``): a held subject may be erased after the case ends, and the chain is kept
for seven years.

On S3 a case also sets the Object Lock legal hold on the data files that hold its records (when the
bucket has Object Lock), and releasing it clears the legal hold on those not held by another open case.

The read API other jobs use: ``open_cases``, ``held_partitions`` (retention's whole-day decision) and
``held_rows`` (erasure's per-record decision).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.errors import KbakError
from pipeline.core.storage import Lake
from pipeline.core.subject import KEY, lake_secret, selector_hmac
from pipeline.core.timefmt import now_iso
from pipeline.custody.checks import Check
from pipeline.custody.manifest import Operation

CASES_DIR = "_kbak/cases"
HOLD_OPERATION = Operation.CASE_HOLD.value
RELEASE_OPERATION = Operation.CASE_RELEASE.value
_CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


@dataclass
class Case:
    """One case hold: what it selects, and its life (opened, maybe released)."""

    case_id: str
    topics: str  # full-match regex over topic names
    from_ms: int | None = None  # record timestamps from (inclusive), epoch ms
    to_ms: int | None = None  # ... to (inclusive)
    key_hmacs: list[str] = field(default_factory=list)  # empty: every key
    reason: str | None = None
    status: str = "open"
    opened_at: str | None = None
    opened_by: str | None = None
    opened_version: int | None = None
    released_at: str | None = None
    released_by: str | None = None
    released_version: int | None = None
    release_reason: str | None = None
    objects: list[str] = field(default_factory=list)  # S3 objects this case put a legal hold on

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def matches_topic(self, topic: str) -> bool:
        return re.fullmatch(self.topics, topic) is not None

    def covers_day(self, topic: str, day: date) -> bool:
        """Whether the case's topic and time window reach into (topic, day) at all (keys aside)."""
        if not self.matches_topic(topic):
            return False
        start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
        end = start + 86_400_000 - 1
        return (self.from_ms is None or self.from_ms <= end) and (self.to_ms is None or self.to_ms >= start)

    def as_dict(self) -> dict:
        return asdict(self)


# -- reading -----------------------------------------------------------------------------------


def all_cases(lake: Lake) -> list[Case]:
    """Every case the lake records (open and released), by id."""
    out = []
    for rel in lake.list_files(CASES_DIR):
        if rel.endswith(".json"):
            out.append(Case(**json.loads(lake.read_bytes(rel))))
    return sorted(out, key=lambda c: c.case_id)


def open_cases(lake: Lake) -> list[Case]:
    """The cases in force: erasure refuses their records, retention keeps them."""
    return [c for c in all_cases(lake) if c.is_open]


def held_partitions(lake: Lake, topic: str, day: date, cases: list[Case] | None = None) -> list[str]:
    """Ids of the open cases holding any record of the (topic, day) partition of the current version.

    Retention removes whole (topic, date) partitions: a day with any held record is kept whole.
    A case restricted to keys holds the day only when a record of that day has one of its keys.
    """
    cases = open_cases(lake) if cases is None else cases
    reaching = [c for c in cases if c.is_open and c.covers_day(topic, day)]
    if not any(c.key_hmacs for c in reaching):
        return [c.case_id for c in reaching]
    from pipeline.core.table import open_table

    dt = open_table(lake)
    rows = dt.to_pyarrow_table(
        filters=[("topic", "=", topic), ("date", "=", day)], columns=["topic", "timestamp", "key"]
    )
    held = held_rows(lake, rows, reaching)
    return sorted({c for ids in held for c in ids})


def held_rows(lake: Lake, rows: pa.Table, cases: list[Case] | None = None) -> list[list[str]]:
    """For each row (with ``topic``, ``timestamp``, ``key`` columns): the ids of the open cases holding it."""
    cases = [c for c in (open_cases(lake) if cases is None else cases) if c.is_open]
    n = rows.num_rows
    if not cases or n == 0:
        return [[] for _ in range(n)]
    topics = rows["topic"].to_pylist()
    ts_ms = rows["timestamp"].cast(pa.int64()).to_numpy() // 1000
    hmacs: list[str] | None = None
    if any(c.key_hmacs for c in cases):
        secret = lake_secret(lake)
        memo: dict[bytes | None, str | None] = {None: None}
        hmacs = []
        for k in rows["key"].to_pylist():
            if k not in memo:
                memo[k] = selector_hmac(secret, KEY, k)
            hmacs.append(memo[k])
    out: list[list[str]] = [[] for _ in range(n)]
    for c in cases:
        mask = np.array([c.matches_topic(t) for t in topics], dtype=bool)
        if c.from_ms is not None:
            mask &= ts_ms >= c.from_ms
        if c.to_ms is not None:
            mask &= ts_ms <= c.to_ms
        if c.key_hmacs and hmacs is not None:
            wanted = set(c.key_hmacs)
            mask &= np.array([h in wanted for h in hmacs], dtype=bool)
        for i in np.nonzero(mask)[0]:
            out[int(i)].append(c.case_id)
    return out


# -- checking the convenience documents against the chain ------------------------------------------

CASE_STATE = Check.CASE_STATE


def case_problems(lake: Lake, chain) -> Iterator[tuple[str, str, str, str]]:
    """(check, subject, message, severity) for each case document that disagrees with the chain."""
    recorded: dict[str, tuple[int, dict]] = {}
    for rec in chain:
        body = rec.body or {}
        if body.get("operation") in (HOLD_OPERATION, RELEASE_OPERATION) and isinstance(body.get("case"), dict):
            recorded[body["case"].get("case_id")] = (rec.version, body["case"])
        for carried in body.get(CARRIED) or []:  # an erasure legal-held its replacements for the case
            if carried.get("case") in recorded:
                version, state = recorded[carried["case"]]
                recorded[carried["case"]] = (version, {**state, "objects": state["objects"] + carried["added"]})
    docs = {c.case_id: c for c in all_cases(lake)}
    versions = ("opened_version", "released_version")
    for case_id, (version, state) in sorted(recorded.items()):
        rel = f"{CASES_DIR}/{case_id}.json"
        doc = docs.get(case_id)
        if doc is None:
            yield CASE_STATE, rel, f"missing: version {version} recorded case {case_id!r}", "error"
            continue
        have = {k: v for k, v in doc.as_dict().items() if k not in versions}
        want = {k: v for k, v in state.items() if k not in versions}
        stamp = doc.released_version if doc.status == "released" else doc.opened_version
        if have != want or stamp != version:
            yield CASE_STATE, rel, f"differs from the case state version {version} recorded", "error"
    for case_id in sorted(set(docs) - set(recorded)):
        yield CASE_STATE, f"{CASES_DIR}/{case_id}.json", "no case-hold commit records this case", "error"


# -- erasure rewriting legal-held files ------------------------------------------------------------

CARRIED = "case_objects"  # an erase manifest's key: [{case, added: [replacement paths]}]


def carry_legal_holds(lake: Lake, rewrites: dict[str, str | None]) -> list[dict]:
    """Legal-hold the replacements of files an open case legal-held (S3), before erasure commits them.

    ``--except-held`` (or a subject sharing files with held records) rewrites files a case put a legal
    hold on: the replacement holds the case's records now, so it gets the case's legal hold too. The
    original keeps its own until the case is released. Returns what to record (``CARRIED``).
    """
    if not lake.is_s3:
        return []
    out = []
    for case in open_cases(lake):
        held = set(case.objects)
        added = sorted({new for old, new in rewrites.items() if new and old in held})
        if added:
            from pipeline.custody.hold import set_legal_hold

            set_legal_hold(lake, added, on=True)
            out.append({"case": case.case_id, "added": added})
    return out


def record_carried(lake: Lake, carried: list[dict]) -> None:
    """After the erasure's commit: the cases' documents list the replacements they legal-hold."""
    cases = {c.case_id: c for c in all_cases(lake)}
    for item in carried:
        case = cases[item["case"]]
        case.objects = case.objects + item["added"]
        _write(lake, case)


# -- opening and releasing ----------------------------------------------------------------------


def check_case_id(case_id: str) -> str:
    if not _CASE_ID.fullmatch(case_id or ""):
        raise KbakError(f"--case {case_id!r}: use letters, digits, '.', '_', ':' or '-' (at most 128)")
    return case_id


def open_case(
    lake: Lake,
    case_id: str,
    topics: str,
    from_ms: int | None = None,
    to_ms: int | None = None,
    keys: list[bytes] | None = None,
    reason: str | None = None,
) -> dict:
    """Open a case hold: record it in the chain, and on S3 legal-hold the files holding its records."""
    from pipeline.core.table import open_table
    from pipeline.custody.operation import commit_operation, created_by

    check_case_id(case_id)
    try:
        re.compile(topics)
    except re.error as exc:
        raise KbakError(f"--topics {topics!r} is not a valid regular expression: {exc}") from None
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise KbakError("--from is after --to")
    dt = open_table(lake)
    existing = {c.case_id: c for c in all_cases(lake)}
    if case_id in existing:
        state = "open" if existing[case_id].is_open else "released"
        raise KbakError(f"case {case_id!r} already exists ({state}); a new hold needs a new case id")
    secret = lake_secret(lake) if keys else b""
    case = Case(
        case_id=case_id,
        topics=topics,
        from_ms=from_ms,
        to_ms=to_ms,
        key_hmacs=sorted({selector_hmac(secret, KEY, k) for k in keys or []}),
        reason=reason,
        opened_at=now_iso(),
        opened_by=created_by(),
    )
    lock_note = None
    if lake.is_s3:
        case.objects, lock_note = _legal_hold_files(lake, dt, case, on=True)
    version = commit_operation(lake, dt, HOLD_OPERATION, {"case": case.as_dict()})
    case.opened_version = version
    _write(lake, case)
    return {**case.as_dict(), "version": version, "object_lock": lock_note or _lock_summary(lake, case.objects)}


def release_case(lake: Lake, case_id: str, reason: str | None = None) -> dict:
    """Release an open case: record it in the chain; clear legal holds no other open case needs."""
    from pipeline.core.table import open_table
    from pipeline.custody.operation import commit_operation, created_by

    check_case_id(case_id)
    dt = open_table(lake)
    cases = {c.case_id: c for c in all_cases(lake)}
    case = cases.get(case_id)
    if case is None:
        raise KbakError(f"no case {case_id!r} in {lake.uri} (see kbak hold --cases)")
    if not case.is_open:
        raise KbakError(f"case {case_id!r} was already released (version {case.released_version})")
    still = {o for c in cases.values() if c.is_open and c.case_id != case_id for o in c.objects}
    freed = [o for o in case.objects if o not in still]
    if freed:
        from pipeline.custody.hold import set_legal_hold

        set_legal_hold(lake, freed, on=False)
    case.status = "released"
    case.released_at = now_iso()
    case.released_by = created_by()
    case.release_reason = reason
    version = commit_operation(lake, dt, RELEASE_OPERATION, {"case": case.as_dict(), "legal_holds_cleared": freed})
    case.released_version = version
    _write(lake, case)
    return {**case.as_dict(), "version": version, "legal_holds_cleared": len(freed)}


def _write(lake: Lake, case: Case) -> None:
    lake.write_bytes(f"{CASES_DIR}/{case.case_id}.json", json.dumps(case.as_dict(), indent=2).encode() + b"\n")


def _legal_hold_files(lake: Lake, dt, case: Case, on: bool) -> tuple[list[str], str | None]:
    """Set the legal hold on the current files holding the case's records; (files, note when impossible)."""
    from pipeline.custody.hold import lock_configuration, set_legal_hold

    try:
        lock_configuration(lake)
    except KbakError as exc:
        return [], f"no legal hold set on objects: {exc}"
    files = case_files(lake, dt, case)
    set_legal_hold(lake, files, on=on)
    return files, None


def case_files(lake: Lake, dt, case: Case) -> list[str]:
    """The data files of ``dt``'s version holding at least one of the case's records."""
    adds = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    out = []
    for a in adds:
        topic = a.get("partition.topic")
        if topic is None or not case.matches_topic(topic):
            continue
        lo, hi = a.get("min.timestamp"), a.get("max.timestamp")
        if case.from_ms is not None and hi is not None and _ms(hi) < case.from_ms:
            continue
        if case.to_ms is not None and lo is not None and _ms(lo) > case.to_ms:
            continue
        if case.key_hmacs or lo is None:
            rows = pq.read_table(io.BytesIO(lake.read_bytes(a["path"])), columns=["timestamp", "key"])
            rows = rows.append_column("topic", pa.array([topic] * rows.num_rows, pa.string()))
            if not any(held_rows(lake, rows, [case])):
                continue
        out.append(a["path"])
    return sorted(out)


def _ms(value) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value) // 1000  # microseconds


def _lock_summary(lake: Lake, objects: list[str]) -> str | None:
    return f"legal hold set on {len(objects)} data files" if lake.is_s3 else None


__all__ = [
    "Case",
    "case_problems",
    "all_cases",
    "carry_legal_holds",
    "case_files",
    "held_partitions",
    "held_rows",
    "open_case",
    "open_cases",
    "record_carried",
    "release_case",
]
