"""``kbak vacuum``: delete from storage the data files that no read needs any more, on the record.

What may go, from the custody chain (never from a guess about storage):

- files removed by ``retention``, at once (the data is past its policy), and with them every earlier
  removed file of the same (topic, date) partitions (older copies of the same expired records);
- erased originals (every ``original`` of an erase manifest's ``files_scrubbed``), at once;
- files removed by any other operation (compaction) once the removal is older than the table's
  ``kbak.removedFileRetentionDuration`` (time travel keeps working inside that window);
- orphans: data files nothing names (no log entry, manifest or readset entry: a crash between writing
  and committing), once a day old (see ``orphans.py``);
- superseded Delta checkpoints, a day old, but one per thousand versions (see ``checkpoints.py``).

Never deleted: a file the current version references, a scrubbed replacement, a file under S3
Object Lock (reported with its retain-until date; a later vacuum deletes it after expiry). The
``vacuum`` manifest listing every file deleted (with the SHA-256 recorded when it was removed and
the version that removed it) is committed *before* the deletes: a crash in between leaves files a
manifest already names, and the next vacuum deletes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from pipeline.core.errors import KbakError
from pipeline.core.readset import load_index
from pipeline.core.storage import Lake
from pipeline.core.table import (
    DELTA_TOMBSTONE_WINDOW,
    REMOVED_FILE_RETENTION,
    SEVEN_YEARS,
    delta_interval,
    open_table,
)
from pipeline.custody.chain import VersionRecord, load_chain
from pipeline.custody.manifest import sha256_hex
from pipeline.custody.operation import commit_operation
from pipeline.custody.scan import storage_files
from pipeline.lifecycle import checkpoints
from pipeline.lifecycle.deletion import Deleter
from pipeline.lifecycle.orphans import orphan_files, unreadable_log

OPERATION = "vacuum"
RETENTION = "retention"
ERASED = "erased"
ORPHAN = "orphan"


@dataclass
class Candidate:
    path: str
    sha256: str | None
    size: int | None
    removed_by_version: int | None  # None for an orphan: no version ever added it
    reason: str  # retention | erased | orphan | the removing operation (compact, ...)
    removed_at: str | None


def removed_file_retention(dt) -> timedelta:
    """How long removed files stay for time travel: the table's ``kbak.removedFileRetentionDuration``.

    Archives created before kbak had that property keep their removed files for their
    ``delta.deletedFileRetentionDuration`` (seven years, as kbak then created them).
    """
    config = dt.metadata().configuration or {}
    text = config.get(REMOVED_FILE_RETENTION) or config.get(DELTA_TOMBSTONE_WINDOW) or SEVEN_YEARS
    keep_for = delta_interval(text)
    if keep_for is None:
        raise KbakError(f"cannot read the table's removed-file retention {text!r}")
    return keep_for


def candidates(chain: list[VersionRecord], now: datetime, keep_for: timedelta) -> list[Candidate]:
    """Every removed file the chain allows to delete now, oldest removal first (not yet checked in storage)."""
    removed: dict[str, Candidate] = {}
    replacements: dict[str, str | None] = {}  # scrubbed replacement -> its SHA-256
    expired_partitions: dict[tuple[str, str], int] = {}  # (topic, date) -> version of the retention
    for rec in chain:
        body = rec.body or {}
        op = body.get("operation") or ""
        for f in body.get("files_removed") or []:
            if f.get("path"):
                removed[f["path"]] = Candidate(
                    f["path"], f.get("sha256"), f.get("size"), rec.version, op, body.get("created_at")
                )
                if op == RETENTION:
                    pv = f.get("partition_values") or {}
                    expired_partitions[(pv.get("topic"), pv.get("date"))] = rec.version
        for s in body.get("files_scrubbed") or []:
            replacements.pop(s.get("original"), None)  # an earlier erasure's replacement, scrubbed again
            if s.get("replacement"):
                replacements[s["replacement"]] = s.get("replacement_sha256")
            original = removed.get(s.get("original"))
            removed[s["original"]] = Candidate(
                s["original"],
                s.get("original_sha256") or (original.sha256 if original else None),
                original.size if original else None,
                rec.version,
                ERASED,
                body.get("created_at"),
            )
        for f in body.get("files_added") or []:
            removed.pop(f.get("path"), None)  # re-added (never by kbak today): live again
    out = []
    for c in removed.values():
        topic_date = _topic_date(c.path)
        expired = topic_date in expired_partitions and c.removed_by_version <= expired_partitions[topic_date]
        if c.path in replacements and not expired:
            continue  # a scrubbed replacement: older versions read it instead of its erased original
        if c.reason != ERASED and expired:
            c.reason = RETENTION
        if c.reason in (RETENTION, ERASED) or _older_than(c.removed_at, now, keep_for):
            out.append(c)
    # A replacement written for a file retention had already removed holds records past their policy too.
    for path, sha in sorted(replacements.items()):
        topic_date = _topic_date(path)
        if path not in removed and topic_date in expired_partitions:
            out.append(Candidate(path, sha, None, expired_partitions[topic_date], RETENTION, None))
    return sorted(out, key=lambda c: (c.removed_by_version, c.path))


def vacuum(lake: Lake, dry_run: bool = False, now: datetime | None = None) -> dict:
    """Delete what the chain allows; one ``vacuum`` manifest per run that deletes or retains anything."""
    now = now or datetime.now(UTC)
    dt = open_table(lake)
    keep_for = removed_file_retention(dt)
    chain = load_chain(lake)
    live = set(pa.table(dt.get_add_actions(flatten=True)).column("path").to_pylist())
    files = storage_files(lake)
    present = {rel: info.size for rel, info in files.items()}
    deleter = Deleter(lake)
    deletable: list[Candidate] = []
    retained: list[dict] = []
    for c in [*candidates(chain, now, keep_for), *_orphans(lake, chain, files, now)]:
        if c.path in live or c.path not in present:
            continue
        lock = deleter.lock(c.path, datetime.now(UTC))  # Object Lock runs on the real clock
        if lock is not None:
            until = lock.retain_until.isoformat() if lock.retain_until else None
            retained.append({"path": c.path, "retain_until": until, "legal_hold": lock.legal_hold,
                             "reason": "object-lock", "removed_by_version": c.removed_by_version})  # fmt: skip
            continue
        deletable.append(c)
    superseded = [  # one under Object Lock waits for a later vacuum
        c for c in checkpoints.superseded(lake, chain, present, now) if deleter.lock(c.path, datetime.now(UTC)) is None
    ]
    checkpoints_deleted = [asdict(c) for c in superseded]
    files_deleted = [
        {"path": c.path, "sha256": c.sha256, "size": c.size if c.size is not None else present[c.path],
         "removed_by_version": c.removed_by_version, "reason": c.reason}
        for c in deletable
    ]  # fmt: skip
    result = {
        "lake": lake.uri,
        "dry_run": dry_run,
        "now": now.isoformat(),
        "removed_file_retention_days": keep_for.days,
        "version": None,
        "files_deleted": files_deleted,
        "files_retained": retained,
        "checkpoints_deleted": checkpoints_deleted,
        "bytes_deleted": sum(f["size"] or 0 for f in files_deleted) + sum(c["size"] or 0 for c in checkpoints_deleted),
        "orphans_not_checked": unreadable_log(chain),
    }
    if dry_run or (not files_deleted and not retained and not checkpoints_deleted):
        return result
    if not files_deleted and not checkpoints_deleted and {f["path"] for f in retained} <= _last_retained(chain):
        return result  # only what the last vacuum already recorded as retained: no new commit
    body = {"files_deleted": files_deleted, "files_retained": retained, "files_added": [], "files_removed": [],
            "checkpoints_deleted": checkpoints_deleted}  # fmt: skip
    result["version"] = commit_operation(lake, dt, OPERATION, body)
    failed = []
    for c in [*deletable, *superseded]:
        try:
            deleter.delete(c.path)
        except KbakError as exc:
            failed.append(str(exc))
    if failed:
        raise KbakError(
            f"vacuum version {result['version']} recorded {len(deletable) + len(superseded)} deletions but "
            f"{len(failed)} failed (the next vacuum retries them): {failed[0]}"
        )
    return result


def _orphans(lake: Lake, chain: list[VersionRecord], files: dict, now: datetime) -> list[Candidate]:
    """Orphan data files as candidates, each with the SHA-256 of its bytes as they are deleted."""
    out = []
    for rel in orphan_files(chain, files, now, load_index(lake)):
        info = files[rel]
        written = info.mtime.astimezone(UTC).isoformat() if info.mtime else None
        out.append(Candidate(rel, sha256_hex(lake.read_bytes(rel)), info.size, None, ORPHAN, written))
    return out


def _last_retained(chain: list[VersionRecord]) -> set[str]:
    """The files the newest vacuum manifest recorded as retained under Object Lock."""
    for rec in reversed(chain):
        body = rec.body or {}
        if body.get("operation") == OPERATION:
            return {f.get("path") for f in body.get("files_retained") or []}
    return set()


def _topic_date(path: str) -> tuple[str | None, str | None]:
    parts = dict(p.split("=", 1) for p in path.split("/") if "=" in p)
    return parts.get("topic"), parts.get("date")


def _older_than(created_at: str | None, now: datetime, keep_for: timedelta) -> bool:
    if not created_at:
        return False
    when = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return now - when >= keep_for
