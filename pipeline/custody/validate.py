"""``kbak validate``: recompute the custody chain and the data from storage, and name what does not match.

Shallow checks read the Delta log, the manifests and a listing of the lake; ``deep`` also fetches every
live data file once (hash + full Parquet decode). Nothing is taken from the in-process seal cache.
Every check is listed in ``CHECKS``; a failing one becomes a ``Finding`` naming the file it is about.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

import pyarrow as pa

from pipeline.core.errors import KbakError
from pipeline.core.storage import Lake
from pipeline.core.table import open_table
from pipeline.custody import verified
from pipeline.custody.cases import CHECKS as CASE_CHECKS
from pipeline.custody.cases import case_problems
from pipeline.custody.chain import VersionRecord, load_chain
from pipeline.custody.history import coverage_parts, head, list_runs, merge_runs
from pipeline.custody.kept_schemas import CHECKS as SCHEMA_CHECKS
from pipeline.custody.kept_schemas import kept_schema_problems
from pipeline.custody.manifest import (
    FORMAT,
    STAGED_DIR,
    canonical_json,
    checkpoint_path,
    log_path,
    manifest_path,
    seal,
    sha256_hex,
)
from pipeline.custody.rewrites import CHECKS as REWRITE_CHECKS
from pipeline.custody.rewrites import content_digests, removed_file_digests, removed_files_gone
from pipeline.custody.scan import FileScan, Keys, duplicates, find_gaps, recorded_gaps, scan_file, storage_sizes
from pipeline.custody.scrubbed import CHECKS as SCRUB_CHECKS
from pipeline.custody.scrubbed import scrub_problems

# check name -> what it verifies (README lists the same)
CHECKS = {
    "delta-log-readable": "the Delta table opens and its current snapshot loads",
    "delta-log-present": "every version from the oldest kept to the newest has its log entry",
    "manifest-present": "every version has its sealed manifest (unsealed with an intact staged body: warning)",
    "manifest-format": "each manifest is canonical JSON of kbak's format naming its own version",
    "manifest-body-digest": "each manifest body hashes to its body_sha256 and to the digest in the Delta commit info",
    "delta-log-digest": "each Delta log entry hashes to the digest its manifest recorded",
    "checkpoint-digest": "each checkpoint a manifest recorded still hashes to that digest",
    "chain-link": "each manifest's previous_manifest_sha256 is the digest of the previous manifest",
    "file-in-manifest": "each file the snapshot references was added by a manifest and not removed since",
    "snapshot-matches-manifests": "each file the manifests say is live is referenced by the Delta snapshot",
    "file-present": "each referenced file exists",
    "file-size": "each file's size equals the size in the Delta log and in its manifest",
    "file-sha256": "(deep) each file's SHA-256 equals its manifest's",
    "parquet-readable": "(deep) each file decodes fully as Parquet",
    "parquet-schema": "(deep) each file has kbak's record schema",
    "row-count": "(deep) each file's rows equal its manifest's and its Delta statistics' record counts",
    "offset-order": "(deep) offsets increase strictly within each partition of a file and from commit to commit",
    "duplicate-offset": "(deep) no (topic, partition, offset) is archived twice",
    "manifest-ranges": "(deep) each commit's per-partition records, offset and time ranges match its files",
    "offset-gap": "(deep, warning) offset holes ingest did not record as deleted before archiving",
    "anchor": "each --anchor VERSION=SHA256 recorded outside the lake still names that version's manifest",
    "foreign-commit": "(warning) versions not written by kbak",
    "orphan-staged-body": "(warning) staged manifest bodies no commit points at (a crash before committing)",
    "encryption": "(S3 with --sse/KBAK_SSE, warning) every object carries the lake's configured server-side encryption",
    **REWRITE_CHECKS,
    **SCHEMA_CHECKS,
    **SCRUB_CHECKS,
    **CASE_CHECKS,
}

ORPHAN_AGE_S = 3600


@dataclass
class Finding:
    check: str
    subject: str  # the file (or version) the finding is about
    message: str
    severity: str = "error"


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
    if backup_id is not None and not any((r.body or {}).get("backup_id") == backup_id for r in chain):
        raise KbakError(f"no ingest run with backup_id {backup_id!r} in {lake.uri} (see kbak list)", exit_code=2)
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
            live={p: list(v) for p, v in _manifest_live(upto, live_before).items()},
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
        add(Finding("encryption", path, f"object has {has}, not the lake's {want}", "warning"))


# -- the chain --------------------------------------------------------------------------------


def _check_chain(lake: Lake, chain: list[VersionRecord], add) -> None:
    checkpoints = {int(p.rsplit("/", 1)[-1][:20]) for p in lake.list_files("_delta_log") if ".checkpoint." in p}
    prev: VersionRecord | None = None
    for rec in chain:
        v = rec.version
        mpath = manifest_path(v)
        if rec.log_bytes is None:
            if any(c >= v for c in checkpoints) and rec.manifest is not None:
                add(
                    Finding("delta-log-present", log_path(v), "log entry gone (expired behind a checkpoint)", "warning")
                )
            else:
                add(Finding("delta-log-present", log_path(v), f"version {v}'s Delta log entry is missing"))
        if rec.log_bytes is not None and not rec.is_kbak:
            engine = rec.info.get("engineInfo") or rec.info.get("clientVersion") or "an unknown writer"
            add(Finding("foreign-commit", log_path(v), f"version {v} was written by {engine}, not kbak", "warning"))
        if rec.status == "missing":
            add(Finding("manifest-present", mpath, f"version {v} has no custody manifest and no staged body"))
        elif rec.status == "unsealed":
            add(
                Finding(
                    "manifest-present",
                    mpath,
                    f"version {v} is unsealed: its staged body is intact (digest in the commit info); "
                    "`kbak validate --repair` or the next ingest seals it",
                    "warning",
                )
            )
        else:
            _check_manifest(lake, rec, prev, add)
        prev = rec


def _check_manifest(lake: Lake, rec: VersionRecord, prev: VersionRecord | None, add) -> None:
    v, mpath, m = rec.version, manifest_path(rec.version), rec.manifest
    if m is None:
        add(Finding("manifest-format", mpath, f"manifest is {rec.manifest_error or 'unreadable'}"))
        return
    if m.get("format") != FORMAT or m.get("version") != v or not isinstance(m.get("body"), dict):
        add(Finding("manifest-format", mpath, f"not a {FORMAT} manifest of version {v}"))
        return
    if canonical_json(m) != rec.manifest_bytes:
        add(Finding("manifest-format", mpath, "manifest bytes are not in canonical form: edited after sealing"))
    body_digest = sha256_hex(canonical_json(m["body"]))
    if body_digest != m.get("body_sha256"):
        add(Finding("manifest-body-digest", mpath, "manifest body does not hash to its body_sha256: body edited"))
    if rec.info.get("kbak.operation") == "ingest" and not rec.body_digest:
        add(Finding("manifest-body-digest", log_path(v), "kbak ingest commit carries no manifest digest: rewritten"))
    if rec.body_digest and rec.body_digest not in (body_digest, None):
        add(
            Finding(
                "manifest-body-digest",
                mpath,
                f"manifest body sha256 {body_digest[:12]}… differs from the commit info's "
                f"kbak.manifest_body_sha256 {rec.body_digest[:12]}…",
            )
        )
    if rec.log_bytes is not None and sha256_hex(rec.log_bytes) != m.get("delta_log_sha256"):
        add(Finding("delta-log-digest", log_path(v), f"Delta log entry of version {v} changed since it was sealed"))
    if m.get("checkpoint_sha256"):
        cp = checkpoint_path(v)
        try:
            ok = sha256_hex(lake.read_bytes(cp)) == m["checkpoint_sha256"]
        except FileNotFoundError:
            ok = False
        if not ok:
            add(Finding("checkpoint-digest", cp, "checkpoint is missing or changed since it was sealed"))
    want_prev = m.get("previous_manifest_sha256")
    if prev is None:
        if v == 0 and want_prev is not None:
            add(Finding("chain-link", mpath, "the first manifest names a previous manifest"))
    elif prev.manifest_bytes is not None and want_prev != prev.manifest_sha256:
        add(
            Finding(
                "chain-link",
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
                    "anchor",
                    manifest_path(version),
                    f"manifest of version {version} hashes to {have or 'nothing (missing)'}, the anchor says {digest}",
                )
            )


def parse_anchor(text: str) -> tuple[int, str]:
    """``VERSION=SHA256`` (``sha256:`` prefix optional)."""
    version, sep, digest = text.partition("=")
    digest = digest.strip().removeprefix("sha256:").lower()
    if not sep or not version.strip().isdigit() or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise KbakError(f"--anchor {text!r}: use VERSION=SHA256 (e.g. 12=sha256:9f2c…, 64 hex digits)", exit_code=2)
    return int(version), digest


def _check_orphans(lake: Lake, chain: list[VersionRecord], add) -> None:
    named = {r.body_digest for r in chain if r.body_digest}
    for rel in lake.list_files(STAGED_DIR):
        digest = rel.rsplit("/", 1)[-1].removesuffix(".json")
        if digest not in named:
            add(Finding("orphan-staged-body", rel, "staged body no commit points at (crash before commit)", "warning"))


def _repair(lake: Lake) -> list[int]:
    load_chain(lake)  # "no archive here" is a usage error (exit 2), before anything is written
    try:
        sealed = seal(lake, open_table(lake), full=True)
    except KbakError as exc:
        raise KbakError(f"cannot repair {lake.uri}: {exc}") from None
    chain = load_chain(lake)
    named = {r.body_digest for r in chain if r.body_digest}
    now = time.time()
    for rel in lake.list_files(STAGED_DIR):
        digest = rel.rsplit("/", 1)[-1].removesuffix(".json")
        info = lake.fs.get_file_info(lake.path(rel))
        age = now - info.mtime.timestamp() if info.mtime else ORPHAN_AGE_S + 1
        if digest not in named and age > ORPHAN_AGE_S:
            lake.delete(rel)
    return sealed


# -- the files ----------------------------------------------------------------------------------


@dataclass
class _Live:
    path: str
    delta_size: int
    delta_records: int | None
    version: int | None  # the version whose manifest added it
    entry: dict | None  # that manifest's file entry


def _manifest_live(chain: list[VersionRecord], before: dict | None = None) -> dict[str, tuple[int, dict]]:
    live: dict[str, tuple[int, dict]] = dict(before or {})
    for rec in chain:
        body = rec.body or {}
        for f in body.get("files_removed") or []:
            live.pop(f.get("path"), None)
        for f in body.get("files_added") or []:
            live[f.get("path")] = (rec.version, f)
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
    except Exception as exc:
        add(Finding("delta-log-readable", "_delta_log", f"the Delta table does not load: {_line(exc)}"))
        return []
    snapshot = {r["path"]: r for r in actions.to_pylist()}
    run_versions = {r.version for r in chain if (r.body or {}).get("backup_id") == backup_id} if backup_id else None
    sizes = storage_sizes(lake)
    live: list[_Live] = []
    for path, row in sorted(snapshot.items()):
        version, entry = by_manifest.get(path, (None, None))
        if run_versions is not None and version not in run_versions:
            continue
        item = _Live(path, row["size_bytes"], row["num_records"], version, entry)
        live.append(item)
        if entry is None:
            add(Finding("file-in-manifest", path, "referenced by the Delta snapshot but added by no custody manifest"))
        if path not in sizes:
            add(Finding("file-present", path, "file is missing from storage"))
            continue
        if sizes[path] != item.delta_size:
            add(Finding("file-size", path, f"size {sizes[path]} differs from the Delta log's {item.delta_size}"))
        elif entry is not None and entry.get("size") not in (None, item.delta_size):
            add(Finding("file-size", path, f"Delta log size {item.delta_size} differs from manifest's {entry['size']}"))
    if run_versions is None:
        for path in sorted(set(by_manifest) - set(snapshot)):
            add(Finding("snapshot-matches-manifests", path, "manifests say this file is live; the snapshot lacks it"))
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
    for item, scan in zip(live, scans, strict=True):
        topic = _topic_of(item)
        if scan.error == "missing":
            unreadable_versions.add(item.version if item.version is not None else -1)
            continue  # named by file-present already
        if item.entry is not None and item.entry.get("sha256") and scan.sha256 != item.entry["sha256"]:
            add(
                Finding(
                    "file-sha256",
                    item.path,
                    f"SHA-256 {scan.sha256[:16]}… differs from version {item.version}'s manifest "
                    f"{item.entry['sha256'][:16]}…",
                )
            )
        if scan.error:
            add(Finding("parquet-readable", item.path, scan.error))
            unreadable_versions.add(item.version if item.version is not None else -1)
            continue
        if scan.schema_problem:
            add(Finding("parquet-schema", item.path, scan.schema_problem))
            unreadable_versions.add(item.version if item.version is not None else -1)
            continue
        want = [
            ("its manifest", item.entry.get("records") if item.entry else None),
            ("Delta stats", item.delta_records),
        ]
        for where, n in want:
            if n is not None and n != scan.rows:
                add(Finding("row-count", item.path, f"file holds {scan.rows} rows, {where} says {n}"))
        for p in scan.unordered_partitions:
            add(Finding("offset-order", item.path, f"offsets of partition {p} are not strictly increasing"))
        day = _day_of(item)
        if day is not None and any(not _within_day(r, day) for r in scan.ranges):
            add(Finding("partition-date", item.path, f"holds records whose UTC day is not its partition date {day}"))
        if scan.keys is not None:
            parts.append((topic, item.path, scan.keys))
        if item.version is not None:
            for r in scan.ranges:
                by_version[item.version][(topic, r["partition"])].append(r)
    keys = Keys.build(parts)
    for d in duplicates(keys):
        where = f"{d['topic']}[{d['partition']}] offset {d['offset']}"
        add(Finding("duplicate-offset", ", ".join(d["files"]), f"{where} is archived more than once"))
    rewrites = {r.version for r in chain if (r.body or {}).get("files_removed")}
    _check_version_order({v: tps for v, tps in by_version.items() if v not in rewrites}, add)
    _check_ranges(chain, by_version, unreadable_versions, live, add)
    recorded = recorded_gaps(rec.body for rec in chain)
    report.gaps = find_gaps(keys, recorded)
    for g in report.gaps:
        if not g["recorded"]:
            add(
                Finding(
                    "offset-gap",
                    f"{g['topic']}[{g['partition']}]",
                    f"offsets {g['first_missing']}..{g['last_missing']} ({g['count']}) missing, not recorded by "
                    "ingest (transaction markers or compaction explain some)",
                    "warning",
                )
            )


def _topic_of(item: _Live) -> str:
    pv = (item.entry or {}).get("partition_values") or {}
    if pv.get("topic"):
        return pv["topic"]
    first = item.path.split("/", 1)[0]
    return first.removeprefix("topic=")


def _day_of(item: _Live) -> date | None:
    """The file's ``date`` partition value (from its manifest entry, else from its path)."""
    pv = (item.entry or {}).get("partition_values") or {}
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
                        "offset-order",
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
        body = rec.body or {}
        declared = body.get("partitions") or []
        added = [f.get("path") for f in body.get("files_added") or []]
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
                        "manifest-ranges",
                        manifest_path(rec.version),
                        f"{d['topic']}[{d['partition']}]: manifest says {_fmt(want)}, files hold {_fmt(got)}",
                    )
                )


_TS = ("first_timestamp_ms", "last_timestamp_ms")


def _fmt(r: dict | None) -> str:
    if not r:
        return "nothing"
    return f"{r['records']} records, offsets {r['first_offset']}..{r['last_offset']}"


def _line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
