"""Data files in storage that nothing names: what a crash between writing and committing leaves.

An ingest (or a compaction) writes its Parquet files first and commits them after; a process killed
in between, or a commit that lost its fence and rewrote its rows, leaves files no version of the table
references. No reader ever sees them, but they hold copies of records (personal data included, which
``kbak erase`` only scrubs in files the table references), so ``kbak vacuum`` deletes them on the
record. A file is an orphan only when every log entry could be read (an unreadable or expired entry
might be the one that adds it) and it is older than ``defaults.ORPHAN_FILE_AGE_S`` (a day) on the real clock:
a running ingest or compaction may be about to commit a younger one, whatever ``--now`` pretends.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import unquote

import pyarrow.fs as pafs

from pipeline.core import defaults
from pipeline.custody.chain import VersionRecord

RESERVED_DIRS = ("_delta_log/", "_kbak/")


def orphan_files(
    chain: list[VersionRecord],
    files: dict[str, pafs.FileInfo],
    now: datetime,
    readset: list[dict] | None = None,
) -> list[str]:
    """The data files of ``files`` (a storage listing) that nothing names, oldest first.

    Named: added by a log entry, or named by a custody manifest or the erasure readset index
    (``readset``: its entries). Erasure's replacements for files only older versions reference are
    never in the log: they live in the manifests and the index, and time travel reads them.
    """
    if unreadable_log(chain):
        return []
    named = set(_added_paths(chain)) | set(_recorded_paths(chain)) | set(_index_paths(readset or []))
    cutoff = min(now, datetime.now(UTC)).timestamp() - defaults.ORPHAN_FILE_AGE_S
    out = []
    for rel, info in files.items():
        if rel in named or not _is_data_file(rel):
            continue
        if info.mtime is not None and info.mtime.timestamp() <= cutoff:
            out.append((info.mtime.timestamp(), rel))
    return [rel for _, rel in sorted(out)]


def unreadable_log(chain: list[VersionRecord]) -> str | None:
    """Why orphans cannot be told apart now (a log entry missing or unreadable), or None."""
    if not chain or chain[0].version != 0:
        return "the log's oldest entries are gone"
    for rec in chain:
        if rec.log_bytes is None or rec.log_error is not None:
            return f"log entry {rec.version} is missing or unreadable"
    return None


def _added_paths(chain: Iterable[VersionRecord]) -> Iterable[str]:
    for rec in chain:
        for action in rec.actions:
            add = action.get("add")
            if add and add.get("path"):
                yield unquote(add["path"])  # the log stores paths URL-encoded


def _recorded_paths(chain: Iterable[VersionRecord]) -> Iterable[str]:
    """Every file a manifest body names (added, removed, scrubbed original or replacement, deleted)."""
    for rec in chain:
        for value in (rec.body or {}).values():
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        yield from (item[k] for k in _PATH_KEYS if isinstance(item.get(k), str))


_PATH_KEYS = ("path", "original", "replacement")


def _index_paths(entries: list[dict]) -> Iterable[str]:
    """Both sides of every replacement in the readset index, pending (uncommitted) erasures included."""
    for entry in entries:
        for original, replacement in (entry.get("replacements") or {}).items():
            yield original
            if replacement:
                yield replacement


def _is_data_file(rel: str) -> bool:
    return rel.endswith(".parquet") and not rel.startswith(RESERVED_DIRS) and "=" in rel.split("/", 1)[0]
