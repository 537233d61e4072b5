"""``kbak validate``: recompute the custody chain and the data from storage, and name what does not match.

Shallow checks read the Delta log, the manifests and a listing of the lake; ``deep`` also fetches every
live data file once (hash + full Parquet decode). Nothing is taken from the in-process seal cache.
Every check is a member of ``Check`` (checks.py); a failing one becomes a ``Finding`` naming the file it is about.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa

from pipeline.core import defaults
from pipeline.core.errors import KbakError, UsageError, first_line
from pipeline.core.storage import Lake, StorageAccessError
from pipeline.core.table import open_table
from pipeline.custody import verified
from pipeline.custody.cases import case_problems
from pipeline.custody.chain import VersionRecord, load_chain
from pipeline.custody.checks import Check
from pipeline.custody.history import coverage_parts, head, list_runs, merge_runs
from pipeline.custody.kept_schemas import kept_schema_problems
from pipeline.custody.manifest import (
    FORMAT,
    STAGED_DIR,
    FileEntry,
    InfoKey,
    Operation,
    canonical_json,
    checkpoint_path,
    log_path,
    manifest_path,
    seal,
    sha256_hex,
)
from pipeline.custody.rewrites import content_digests, removed_file_digests, removed_files_gone
from pipeline.custody.scan import FileScan, Keys, duplicates, find_gaps, recorded_gaps, scan_file, storage_sizes
from pipeline.custody.scrubbed import scrub_problems


@dataclass
class Finding:
    check: Check
    subject: str  # the file (or version) the finding is about
    message: str
    severity: str = ""  # "error" or "warning"; default: the check's own (``Check.warning``)

    def __post_init__(self) -> None:
        self.severity = self.severity or ("warning" if self.check.warning else "error")


@dataclass
class ValidationReport:
    lake: str
    deep: bool
    backup_id: str | None = None
    head: dict | None = None
    versions: int = 0
    files: int = 0
    records: int = 0
    bytes: int = 0
    findings: list[Finding] = field(default_factory=list)
    gaps: list[dict] = field(default_factory=list)
    repaired: list[int] = field(default_factory=list)
    verified_from: int | None = None  # the verified point this validation started at (None: everything)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def valid(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {
            "lake": self.lake,
            "valid": self.valid,
            "deep": self.deep,
            "backup_id": self.backup_id,
            "head": self.head,
            "versions": self.versions,
            "files": self.files,
            "records": self.records,
            "bytes": self.bytes,
            "errors": [asdict(f) for f in self.errors],
            "warnings": [asdict(f) for f in self.warnings],
            "gaps": self.gaps,
            "repaired_versions": self.repaired,
            "verified_from": self.verified_from,
        }


def validate(
    lake: Lake,
    deep: bool = False,
    backup_id: str | None = None,
    repair: bool = False,
    anchors: dict[int, str] | None = None,
    full: bool = False,
) -> ValidationReport:
    """Check the lake; ``repair`` first seals unsealed versions and removes old orphan staged bodies.

    ``anchors``: manifest digests by version, kept outside the lake (a past report's chain head): a
    chain rewritten consistently from some version on still contradicts them.
    """
    report = ValidationReport(lake.uri, deep, backup_id)
    if repair:
        report.repaired = _repair(lake)
    # Everything is checked unless a verified point lets a plain validate start there (see verified.py).
    point = None if (full or deep or repair or anchors or backup_id) else verified.load(lake)
    chain = verified.chain_since(lake, point) if point else None
    if chain is None:
        point, chain = None, load_chain(lake)
    report.verified_from = point.version if point else None
    report.versions = len(chain) + (point.version if point else 0)
    report.head = head(chain)
    if backup_id is not None and not any(r.manifest_body.backup_id == backup_id for r in chain):
        raise UsageError(f"no ingest run with backup_id {backup_id!r} in {lake.uri} (see kbak list)")
    add = report.findings.append
    new = [r for r in chain if point is None or r.version > point.version]
    live_before = {p: tuple(v) for p, v in point.live.items()} if point else None
    by_manifest = _manifest_live(new, live_before)
    _check_chain(lake, chain, add)
    for check, subject, message in removed_file_digests(chain, live_before):
        add(Finding(check, subject, message))
    whole = (point.prefix_records() if point else []) + new  # what chain-wide checks need of the past
    for check, subject, message, severity in [*scrub_problems(lake, whole, deep), *case_problems(lake, whole)]:
        add(Finding(check, subject, message, severity))
    _check_anchors(chain, anchors or {}, add)
    for check, subject, message, severity in kept_schema_problems(lake, whole):
        add(Finding(check, subject, message, severity))
    _check_orphans(lake, chain, add)
    live = _check_files(lake, chain, backup_id, deep, report, by_manifest)
    _check_encryption(lake, add)
    if deep and live:
        _deep(lake, chain, live, report)
    if deep:
        gone = removed_files_gone(chain, set(storage_sizes(lake)))
        for check, subject, message in [*content_digests(lake, chain), *gone]:
            add(Finding(check, subject, message))
    if report.valid and backup_id is None:
        _advance_point(lake, point, new, report.head)
    return report


def _advance_point(lake: Lake, point: verified.VerifiedPoint | None, new: list[VersionRecord], at: dict | None) -> None:
    """Record the newest sealed manifest of a clean validation as the next validation's starting point."""
    if at is None:
        return
    upto = [r for r in new if r.version <= at["version"]]
    live_before = {p: tuple(v) for p, v in point.live.items()} if point else None
    verified.save(
        lake,
        verified.VerifiedPoint(
            version=at["version"],
            manifest_sha256=at["manifest_sha256"],
            live={p: [v, e.to_dict()] for p, (v, e) in _manifest_live(upto, live_before).items()},
            bodies=(point.bodies if point else []) + verified.sparse_bodies(upto),
            runs=merge_runs(point.runs if point else [], list_runs(upto)),
            coverage_parts=coverage_parts(upto, point.coverage_parts if point else None),
            verified_at=datetime.now(UTC).isoformat(timespec="seconds"),
        ),
    )


def _check_encryption(lake: Lake, add) -> None:
    if not (lake.is_s3 and lake.s3.sse):
        return
    from pipeline.custody.encryption import unencrypted

    want = lake.s3.sse + (f" with key {lake.s3.sse_kms_key_id}" if lake.s3.sse_kms_key_id else "")
    for path, sse, key in unencrypted(lake, lake.s3.sse, lake.s3.sse_kms_key_id):
        has = f"{sse} with key {key}" if key else (sse or "no server-side encryption")
        add(Finding(Check.ENCRYPTION, path, f"object has {has}, not the lake's {want}"))


# -- the chain --------------------------------------------------------------------------------


def _check_chain(lake: Lake, chain: list[VersionRecord], add) -> None:
    checkpoints = {int(p.rsplit("/", 1)[-1][:20]) for p in lake.list_files("_delta_log") if ".checkpoint." in p}
    vacuumed = {c.get("path") for rec in chain for c in (rec.body or {}).get("checkpoints_deleted") or []}
    prev: VersionRecord | None = None
    for rec in chain:
        v = rec.version
        mpath = manifest_path(v)
        if rec.log_bytes is None:
            if any(c >= v for c in checkpoints) and rec.manifest is not None:
                add(
                    Finding(
                        Check.DELTA_LOG_PRESENT, log_path(v), "log entry gone (expired behind a checkpoint)", "warning"
                    )
                )
            else:
                add(Finding(Check.DELTA_LOG_PRESENT, log_path(v), f"version {v}'s Delta log entry is missing"))
        if rec.log_error is not None:
            add(Finding(Check.DELTA_LOG_PARSEABLE, log_path(v), f"corrupt Delta log entry: {rec.log_error}"))
        elif rec.log_bytes is not None and not rec.is_kbak:
            engine = rec.info.get("engineInfo") or rec.info.get("clientVersion") or "an unknown writer"
            add(Finding(Check.FOREIGN_COMMIT, log_path(v), f"version {v} was written by {engine}, not kbak", "warning"))
        if rec.manifest_bytes is not None:
            _check_manifest(lake, rec, prev, add, vacuumed)
        elif rec.log_error is not None:
            pass  # a corrupt entry names no staged body: delta-log-parseable says what is wrong
        elif rec.status == "missing":
            add(Finding(Check.MANIFEST_PRESENT, mpath, f"version {v} has no custody manifest and no staged body"))
        elif rec.status == "unsealed":
            add(
                Finding(
                    Check.MANIFEST_PRESENT,
                    mpath,
                    f"version {v} is unsealed: its staged body is intact (digest in the commit info); "
                    "`kbak validate --repair` or the next ingest seals it",
                    "warning",
                )
            )
        prev = rec


def _check_manifest(lake: Lake, rec: VersionRecord, prev: VersionRecord | None, add, vacuumed: set[str]) -> None:
    """One sealed manifest against its log entry, its checkpoint (unless a vacuum deleted it) and its predecessor."""
    v, mpath, m = rec.version, manifest_path(rec.version), rec.manifest
    if m is None:
        add(Finding(Check.MANIFEST_FORMAT, mpath, f"manifest is {rec.manifest_error or 'unreadable'}"))
        return
    if m.get("format") != FORMAT or m.get("version") != v or not isinstance(m.get("body"), dict):
        add(Finding(Check.MANIFEST_FORMAT, mpath, f"not a {FORMAT} manifest of version {v}"))
        return
    if canonical_json(m) != rec.manifest_bytes:
        add(Finding(Check.MANIFEST_FORMAT, mpath, "manifest bytes are not in canonical form: edited after sealing"))
    body_digest = sha256_hex(canonical_json(m["body"]))
    if body_digest != m.get("body_sha256"):
        add(Finding(Check.MANIFEST_BODY_DIGEST, mpath, "manifest body does not hash to its body_sha256: body edited"))
    if rec.info.get(InfoKey.OPERATION) == Operation.INGEST and not rec.body_digest:
        add(
            Finding(Check.MANIFEST_BODY_DIGEST, log_path(v), "kbak ingest commit carries no manifest digest: rewritten")
        )
    if rec.body_digest and rec.body_digest not in (body_digest, None):
        add(
            Finding(
                Check.MANIFEST_BODY_DIGEST,
                mpath,
                f"manifest body sha256 {body_digest[:12]}… differs from the commit info's "
                f"{InfoKey.MANIFEST_BODY_SHA256} {rec.body_digest[:12]}…",
            )
        )
    if rec.log_bytes is not None and sha256_hex(rec.log_bytes) != m.get("delta_log_sha256"):
        add(Finding(Check.DELTA_LOG_DIGEST, log_path(v), f"Delta log entry of version {v} changed since it was sealed"))
    if m.get("checkpoint_sha256"):
        cp = checkpoint_path(v)
        try:
            ok = sha256_hex(lake.read_bytes(cp)) == m["checkpoint_sha256"]
        except FileNotFoundError:
            ok = cp in vacuumed  # a superseded checkpoint kbak vacuum deleted, on the record
        if not ok:
            add(Finding(Check.CHECKPOINT_DIGEST, cp, "checkpoint is missing or changed since it was sealed"))
    want_prev = m.get("previous_manifest_sha256")
    if prev is None:
        if v == 0 and want_prev is not None:
            add(Finding(Check.CHAIN_LINK, mpath, "the first manifest names a previous manifest"))
    elif prev.manifest_bytes is not None and want_prev != prev.manifest_sha256:
        add(
            Finding(
                Check.CHAIN_LINK,
                manifest_path(prev.version),
                f"manifest of version {prev.version} no longer hashes to the link version {v}'s manifest recorded",
            )
        )


def _check_anchors(chain: list[VersionRecord], anchors: dict[int, str], add) -> None:
    by_version = {r.version: r for r in chain}
    for version, digest in sorted(anchors.items()):
        rec = by_version.get(version)
        have = rec.manifest_sha256 if rec else None
        if have != digest.removeprefix("sha256:").lower():
            add(
                Finding(
                    Check.ANCHOR,
                    manifest_path(version),
                    f"manifest of version {version} hashes to {have or 'nothing (missing)'}, the anchor says {digest}",
                )
            )


def parse_anchor(text: str) -> tuple[int, str]:
    """``VERSION=SHA256`` (``sha256:`` prefix optional)."""
    version, sep, digest = text.partition("=")
    digest = digest.strip().removeprefix("sha256:").lower()
    if not sep or not version.strip().isdigit() or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise UsageError(f"--anchor {text!r}: use VERSION=SHA256 (e.g. 12=sha256:9f2c…, 64 hex digits)")
    return int(version), digest


def _check_orphans(lake: Lake, chain: list[VersionRecord], add) -> None:
    named = {r.body_digest for r in chain if r.body_digest}
    for rel in lake.list_files(STAGED_DIR):
        digest = rel.rsplit("/", 1)[-1].removesuffix(".json")
        if digest not in named:
            add(Finding(Check.ORPHAN_STAGED_BODY, rel, _ORPHAN))


_ORPHAN = (
    "staged manifest body of a commit that never committed (the process stopped before committing, or it "
    "lost a commit race to a concurrent ingest); harmless, `kbak validate --repair` removes it once an hour old"
)


def _repair(lake: Lake) -> list[int]:
    load_chain(lake)  # "no archive here" is a usage error (exit 2), before anything is written
    try:
        sealed = seal(lake, open_table(lake), full=True)
    except KbakError as exc:
        raise type(exc)(f"cannot repair {lake.uri}: {exc}", exc.exit_code) from None
    chain = load_chain(lake)
    named = {r.body_digest for r in chain if r.body_digest}
    now = time.time()
    for rel in lake.list_files(STAGED_DIR):
        digest = rel.rsplit("/", 1)[-1].removesuffix(".json")
        info = lake.fs.get_file_info(lake.path(rel))
        age = now - info.mtime.timestamp() if info.mtime else defaults.ORPHAN_AGE_S + 1
        if digest not in named and age > defaults.ORPHAN_AGE_S:
            lake.delete(rel)
    return sealed


# -- the files ----------------------------------------------------------------------------------


@dataclass
class _Live:
    path: str
    delta_size: int
    delta_records: int | None
    version: int | None  # the version whose manifest added it
    entry: FileEntry | None  # that manifest's file entry


def _manifest_live(chain: list[VersionRecord], before: dict | None = None) -> dict[str, tuple[int, FileEntry]]:
    # ``before`` is a verified point's, as stored: path -> (version, manifest entry as a dict).
    live = {path: (version, FileEntry.from_dict(entry)) for path, (version, entry) in (before or {}).items()}
    for rec in chain:
        for f in rec.manifest_body.files_removed:
            live.pop(f.path, None)
        for f in rec.manifest_body.files_added:
            live[f.path] = (rec.version, f)
    return live


def _check_files(
    lake: Lake,
    chain: list[VersionRecord],
    backup_id: str | None,
    deep: bool,
    report: ValidationReport,
    by_manifest: dict[str, tuple[int, dict]],
) -> list[_Live]:
    add = report.findings.append
    try:
        # The snapshot of the newest version the chain was read at: a commit landing meanwhile
        # (a running ingest) is not half-seen.
        dt = open_table(lake, chain[-1].version if chain else None)
        actions = pa.table(dt.get_add_actions(flatten=True)).select(["path", "size_bytes", "num_records"])
    except StorageAccessError:
        raise  # could not check: not a finding about the archive
    except Exception as exc:
        add(Finding(Check.DELTA_LOG_READABLE, "_delta_log", f"the Delta table does not load: {first_line(exc, 200)}"))
        return []
    snapshot = {r["path"]: r for r in actions.to_pylist()}
    run_versions = {r.version for r in chain if r.manifest_body.backup_id == backup_id} if backup_id else None
    sizes = storage_sizes(lake)
    live: list[_Live] = []
    for path, row in sorted(snapshot.items()):
        version, entry = by_manifest.get(path, (None, None))
        if run_versions is not None and version not in run_versions:
            continue
        item = _Live(path, row["size_bytes"], row["num_records"], version, entry)
        live.append(item)
        if entry is None:
            add(
                Finding(
                    Check.FILE_IN_MANIFEST, path, "referenced by the Delta snapshot but added by no custody manifest"
                )
            )
        if path not in sizes:
            add(Finding(Check.FILE_PRESENT, path, "file is missing from storage"))
            continue
        if sizes[path] != item.delta_size:
            add(Finding(Check.FILE_SIZE, path, f"size {sizes[path]} differs from the Delta log's {item.delta_size}"))
        elif entry is not None and entry.size not in (None, item.delta_size):
            add(
                Finding(Check.FILE_SIZE, path, f"Delta log size {item.delta_size} differs from manifest's {entry.size}")
            )
    if run_versions is None:
        for path in sorted(set(by_manifest) - set(snapshot)):
            add(
                Finding(
                    Check.SNAPSHOT_MATCHES_MANIFESTS, path, "manifests say this file is live; the snapshot lacks it"
                )
            )
    report.files = len(live)
    report.bytes = sum(i.delta_size for i in live)
    report.records = sum(i.delta_records or 0 for i in live)
    return live


def _deep(lake: Lake, chain: list[VersionRecord], live: list[_Live], report: ValidationReport) -> None:
    add = report.findings.append
    threads = 16 if lake.is_s3 else 4
    with ThreadPoolExecutor(max_workers=threads) as pool:
        scans: list[FileScan] = list(pool.map(lambda i: scan_file(lake, i.path), live))
    parts: list[tuple[str, str, pa.Table]] = []
    by_version: dict[int, dict[tuple[str, int], list[dict]]] = defaultdict(lambda: defaultdict(list))
    unreadable_versions: set[int] = set()
    missing: list[_Live] = []
    for item, scan in zip(live, scans, strict=True):
        topic = _topic_of(item)
        if scan.error == "missing":
            unreadable_versions.add(item.version if item.version is not None else -1)
            missing.append(item)
            continue  # named by file-present already
        if item.entry is not None and item.entry.sha256 and scan.sha256 != item.entry.sha256:
            add(
                Finding(
                    Check.FILE_SHA256,
                    item.path,
                    f"SHA-256 {scan.sha256[:16]}… differs from version {item.version}'s manifest "
                    f"{item.entry.sha256[:16]}…",
                )
            )
        if scan.error:
            add(Finding(Check.PARQUET_READABLE, item.path, scan.error))
            unreadable_versions.add(item.version if item.version is not None else -1)
            continue
        if scan.schema_problem:
            add(Finding(Check.PARQUET_SCHEMA, item.path, scan.schema_problem))
            unreadable_versions.add(item.version if item.version is not None else -1)
            continue
        want = [
            ("its manifest", item.entry.records if item.entry else None),
            ("Delta stats", item.delta_records),
        ]
        for where, n in want:
            if n is not None and n != scan.rows:
                add(Finding(Check.ROW_COUNT, item.path, f"file holds {scan.rows} rows, {where} says {n}"))
        for p in scan.unordered_partitions:
            add(Finding(Check.OFFSET_ORDER, item.path, f"offsets of partition {p} are not strictly increasing"))
        day = _day_of(item)
        if day is not None and any(not _within_day(r, day) for r in scan.ranges):
            add(
                Finding(Check.PARTITION_DATE, item.path, f"holds records whose UTC day is not its partition date {day}")
            )
        if scan.keys is not None:
            parts.append((topic, item.path, scan.keys))
        if item.version is not None:
            for r in scan.ranges:
                by_version[item.version][(topic, r["partition"])].append(r)
    keys = Keys.build(parts)
    for d in duplicates(keys):
        where = f"{d['topic']}[{d['partition']}] offset {d['offset']}"
        add(Finding(Check.DUPLICATE_OFFSET, ", ".join(d["files"]), f"{where} is archived more than once"))
    rewrites = {r.version for r in chain if r.manifest_body.files_removed}
    _check_version_order({v: tps for v, tps in by_version.items() if v not in rewrites}, add)
    _check_ranges(chain, by_version, unreadable_versions, live, add)
    recorded = recorded_gaps(rec.body for rec in chain)
    lost = lost_offsets(chain, missing, keys)
    report.gaps = [g for g in find_gaps(keys, recorded) if not _covered(g, lost)] + lost
    report.gaps.sort(key=lambda g: (g["topic"], g["partition"], g["first_missing"]))
    for g in report.gaps:
        if g.get("lost_with"):
            add(
                Finding(
                    Check.OFFSET_GAP,
                    f"{g['topic']}[{g['partition']}]",
                    f"offsets {g['first_missing']}..{g['last_missing']} ({g['count']}) lost: held by missing file "
                    f"{g['lost_with']} (version {g['version']}'s manifest)",
                    "error",
                )
            )
        elif not g["recorded"]:
            add(
                Finding(
                    Check.OFFSET_GAP,
                    f"{g['topic']}[{g['partition']}]",
                    f"offsets {g['first_missing']}..{g['last_missing']} ({g['count']}) missing, not recorded by "
                    "ingest (transaction markers or compaction explain some)",
                    "warning",
                )
            )


def lost_offsets(chain: list[VersionRecord], missing: list[_Live], keys: Keys) -> list[dict]:
    """The offsets missing files held: their commit's declared ranges (for their topic) no present file holds."""
    by_version = {r.version: r for r in chain}
    out: list[dict] = []
    for item in missing:
        rec = by_version.get(item.version) if item.version is not None else None
        if rec is None:
            continue
        topic = _topic_of(item)
        for d in rec.manifest_body.partitions:
            if d.get("topic") != topic:
                continue
            present = keys.offsets_of(topic, d["partition"], d["first_offset"], d["last_offset"])
            for first, last in _runs_missing(present, d["first_offset"], d["last_offset"]):
                out.append(
                    {
                        "topic": topic,
                        "partition": d["partition"],
                        "first_missing": first,
                        "last_missing": last,
                        "count": last - first + 1,
                        "recorded": False,
                        "reason": f"lost: file {item.path} is missing",
                        "lost_with": item.path,
                        "version": item.version,
                    }
                )
    return out


def _runs_missing(present: np.ndarray, first: int, last: int) -> list[tuple[int, int]]:
    """Maximal runs of [first, last] not in ``present`` (sorted offsets within the range)."""
    runs, at = [], first
    for o in present.tolist():
        if o > at:
            runs.append((at, o - 1))
        at = max(at, o + 1)
    if at <= last:
        runs.append((at, last))
    return runs


def _covered(gap: dict, lost: list[dict]) -> bool:
    """A hole find_gaps saw lies wholly inside the offsets a missing file held."""
    return any(
        x["topic"] == gap["topic"]
        and x["partition"] == gap["partition"]
        and x["first_missing"] <= gap["first_missing"]
        and gap["last_missing"] <= x["last_missing"]
        for x in lost
    )


def _topic_of(item: _Live) -> str:
    pv = (item.entry.partition_values if item.entry else None) or {}
    if pv.get("topic"):
        return pv["topic"]
    first = item.path.split("/", 1)[0]
    return first.removeprefix("topic=")


def _day_of(item: _Live) -> date | None:
    """The file's ``date`` partition value (from its manifest entry, else from its path)."""
    pv = (item.entry.partition_values if item.entry else None) or {}
    from_path = (p.removeprefix("date=") for p in item.path.split("/") if p.startswith("date="))
    text = pv.get("date") or next(from_path, None)
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _within_day(r: dict, day: date) -> bool:
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    return start <= r["first_timestamp_ms"] and r["last_timestamp_ms"] < start + 86_400_000


def _check_version_order(by_version: dict, add) -> None:
    """Each appending commit's offsets of a partition lie after every earlier commit's.

    Rewrites (commits that also remove files: erasure, compaction) legitimately re-add old offsets;
    what they must not do, archive an offset twice, the duplicate check covers.
    """
    high: dict[tuple[str, int], tuple[int, int]] = {}
    for version in sorted(by_version):
        for tp, ranges in sorted(by_version[version].items()):
            lo = min(r["first_offset"] for r in ranges)
            if tp in high and lo <= high[tp][0]:
                add(
                    Finding(
                        Check.OFFSET_ORDER,
                        manifest_path(version),
                        f"version {version} archives {tp[0]}[{tp[1]}] from offset {lo}, not after version "
                        f"{high[tp][1]}'s offset {high[tp][0]}",
                    )
                )
            hi = max(r["last_offset"] for r in ranges)
            if tp not in high or hi > high[tp][0]:
                high[tp] = (hi, version)


def _check_ranges(chain: list[VersionRecord], by_version: dict, unreadable: set[int], live: list[_Live], add) -> None:
    """Per commit: what the manifest says it archived equals what its files hold."""
    live_paths = {i.path for i in live}
    for rec in chain:
        declared = rec.manifest_body.partitions
        added = [f.path for f in rec.manifest_body.files_added]
        if not declared or rec.version in unreadable or not all(p in live_paths for p in added):
            continue  # removed since (erasure, compaction) or already named as unreadable
        actual = by_version.get(rec.version, {})
        for d in declared:
            rs = actual.get((d["topic"], d["partition"]))
            got = None
            if rs:
                got = {
                    "records": sum(r["records"] for r in rs),
                    "first_offset": min(r["first_offset"] for r in rs),
                    "last_offset": max(r["last_offset"] for r in rs),
                    "first_timestamp_ms": min(r["first_timestamp_ms"] for r in rs),
                    "last_timestamp_ms": max(r["last_timestamp_ms"] for r in rs),
                }
            want = {k: d.get(k) for k in ("records", "first_offset", "last_offset") + _TS}
            if got != want:
                add(
                    Finding(
                        Check.MANIFEST_RANGES,
                        manifest_path(rec.version),
                        f"{d['topic']}[{d['partition']}]: manifest says {_fmt(want)}, files hold {_fmt(got)}",
                    )
                )


_TS = ("first_timestamp_ms", "last_timestamp_ms")


def _fmt(r: dict | None) -> str:
    if not r:
        return "nothing"
    return f"{r['records']} records, offsets {r['first_offset']}..{r['last_offset']}"
