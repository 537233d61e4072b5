"""Data files in storage that no commit ever named: what a crash between writing and committing leaves.

An ingest (or a compaction) writes its Parquet files first and commits them after; a process killed
in between, or a commit that lost its fence and rewrote its rows, leaves files no version of the table
references. No reader ever sees them, but they hold copies of records (personal data included, which
``kbak erase`` only scrubs in files the table references), so ``kbak vacuum`` deletes them on the
record. A file is an orphan only when every log entry could be read (an unreadable or expired entry
might be the one that adds it) and it is older than ``defaults.ORPHAN_AGE_S`` on the real clock: a
running ingest may be about to commit a younger one, whatever ``--now`` pretends.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import unquote

import pyarrow.fs as pafs

from pipeline.core import defaults
from pipeline.custody.chain import VersionRecord

RESERVED_DIRS = ("_delta_log/", "_kbak/")


def orphan_files(chain: list[VersionRecord], files: dict[str, pafs.FileInfo], now: datetime) -> list[str]:
    """The data files of ``files`` (a storage listing) that no version adds, oldest first."""
    if unreadable_log(chain):
        return []
    named = set(_added_paths(chain))
    cutoff = min(now, datetime.now(UTC)).timestamp() - defaults.ORPHAN_AGE_S
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


def _is_data_file(rel: str) -> bool:
    return rel.endswith(".parquet") and not rel.startswith(RESERVED_DIRS) and "=" in rel.split("/", 1)[0]
