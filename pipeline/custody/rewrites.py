"""Validation of the commits that remove or rewrite files (compaction, retention, erasure).

Two questions: does each removed file's recorded SHA-256 equal the one recorded when it was added
(nothing was swapped before a rewrite laundered it), and (deep) does a compaction's recorded
content digest still equal the digest of the files it added and of the files it removed, as far as
those are still in storage (``kbak vacuum`` may have deleted the removed ones since)?
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.core.storage import Lake
from pipeline.custody.chain import VersionRecord
from pipeline.custody.checks import Check
from pipeline.custody.digest import RecordDigest, combine, record_digest
from pipeline.custody.manifest import FileEntry, Operation, manifest_path

REMOVED_FILE_DIGEST = Check.REMOVED_FILE_DIGEST
CONTENT_DIGEST = Check.CONTENT_DIGEST
REMOVED_FILE_GONE = Check.REMOVED_FILE_GONE

Problem = tuple[Check, str, str]  # check, subject, message


def removed_file_digests(chain: list[VersionRecord], live_before: dict | None = None) -> Iterator[Problem]:
    """``live_before``: path -> (version, entry) of the files live before ``chain`` (a verified point's)."""
    added: dict[str, tuple[int, str]] = {p: (v, e.get("sha256") or "") for p, (v, e) in (live_before or {}).items()}
    for rec in chain:
        body = rec.manifest_body
        for f in body.files_removed:
            was = added.get(f.path)
            if was and f.sha256 and was[1] and f.sha256 != was[1]:
                yield (
                    REMOVED_FILE_DIGEST,
                    f.path,
                    f"version {rec.version} removed it with SHA-256 {f.sha256[:16]}…, version {was[0]} "
                    f"added it with {was[1][:16]}…: the file changed before it was rewritten",
                )
        for f in body.files_added:
            if f.path:
                added[f.path] = (rec.version, f.sha256 or "")


def removed_files_gone(chain: list[VersionRecord], present: set[str]) -> Iterator[Problem]:
    """Removed files missing from storage that no vacuum manifest says it deleted."""
    removed: dict[str, int] = {}
    vacuumed: set[str] = set()
    for rec in chain:
        body = rec.body or {}
        for f in body.get("files_removed") or []:
            removed[f.get("path")] = rec.version
        for s in body.get("files_scrubbed") or []:
            removed[s.get("original")] = rec.version
        for f in body.get("files_added") or []:
            removed.pop(f.get("path"), None)
        vacuumed.update(f.get("path") for f in body.get("files_deleted") or [])
    for path, version in sorted(removed.items(), key=lambda kv: (kv[1], str(kv[0]))):
        if path and path not in present and path not in vacuumed:
            yield (
                REMOVED_FILE_GONE,
                path,
                f"removed from the table at version {version} and gone from storage, but no vacuum recorded "
                "deleting it",
            )


def content_digests(lake: Lake, chain: list[VersionRecord]) -> Iterator[Problem]:
    for rec in chain:
        body = rec.manifest_body
        recorded = body.extra.get("content_digest")
        if body.operation != Operation.COMPACT or not isinstance(recorded, dict):
            continue
        want = RecordDigest.from_dict(recorded)
        for side, files in (("files_added", body.files_added), ("files_removed", body.files_removed)):
            got = _digest_of(lake, files, body.extra.get("topic"))
            if got is not None and got != want:
                yield (
                    CONTENT_DIGEST,
                    manifest_path(rec.version),
                    f"compaction at version {rec.version}: its {side.removeprefix('files_')} files hold "
                    f"{got.records} records with digest {got.hex[:16]}…, the manifest recorded {want.records} "
                    f"with {want.hex[:16]}…",
                )


def _digest_of(lake: Lake, files: list[FileEntry], topic: str | None) -> RecordDigest | None:
    """The files' record digest, or None when any of them is no longer in storage."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = []
    for f in files:
        try:
            data = lake.read_bytes(f.path)
        except FileNotFoundError:
            return None
        file_topic = topic or (f.partition_values or {}).get("topic") or ""
        parts.append(record_digest(pq.read_table(pa.BufferReader(data)), file_topic))
    return combine(parts)
