"""Which data files ``kbak vacuum`` treats as orphans (written, never committed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow.fs as pafs

from pipeline.custody.chain import VersionRecord
from pipeline.lifecycle.orphans import orphan_files, unreadable_log

NOW = datetime.now(UTC)


def _rec(version: int, *added: str) -> VersionRecord:
    return VersionRecord(version, log_bytes=b"{}", actions=[{"add": {"path": p}} for p in added])


def _file(rel: str, age: timedelta) -> tuple[str, pafs.FileInfo]:
    return rel, pafs.FileInfo(rel, type=pafs.FileType.File, size=10, mtime=NOW - age)


OLD, YOUNG = timedelta(hours=25), timedelta(hours=23)


def test_old_unnamed_data_files_are_orphans_oldest_first():
    chain = [_rec(0), _rec(1, "topic=a/date=2024-11-01/part-1.parquet", "topic=a/date=2024-11-01/b%20c.parquet")]
    files = dict(
        [
            _file("topic=a/date=2024-11-01/part-1.parquet", OLD),  # committed
            _file("topic=a/date=2024-11-01/b c.parquet", OLD),  # committed (the log URL-encodes paths)
            _file("topic=a/date=2024-11-01/part-2.parquet", OLD),
            _file("topic=a/date=2024-11-02/part-3.parquet", OLD + OLD),
            _file("topic=a/date=2024-11-02/part-4.parquet", YOUNG),  # an ingest may be about to commit it
            _file("_delta_log/00000000000000000010.checkpoint.parquet", OLD),
            _file("_kbak/readset/x.parquet", OLD),
            _file("notes.parquet", OLD),  # not in a partition directory: not kbak's
        ]
    )
    assert orphan_files(chain, files, NOW) == [
        "topic=a/date=2024-11-02/part-3.parquet",
        "topic=a/date=2024-11-01/part-2.parquet",
    ]


def test_now_in_the_future_never_makes_a_young_file_an_orphan():
    files = dict([_file("topic=a/date=2024-11-02/part-4.parquet", YOUNG)])
    assert orphan_files([_rec(0)], files, NOW + timedelta(days=3650)) == []


def test_no_orphans_when_a_log_entry_that_might_add_the_file_is_unreadable():
    files = dict([_file("topic=a/date=2024-11-02/part-3.parquet", OLD)])
    broken = [_rec(0), VersionRecord(1, log_bytes=b"{trunc", log_error="not JSON")]
    assert unreadable_log(broken) and orphan_files(broken, files, NOW) == []
    expired = [_rec(5)]  # entries 0..4 gone
    assert unreadable_log(expired) and orphan_files(expired, files, NOW) == []


def test_files_a_manifest_or_the_erasure_index_names_are_never_orphans():
    """Erasure's replacements of files only older versions reference are not in the log: still not orphans."""
    replacement = "topic=a/date=2024-11-01/part-r.parquet"
    pending = "topic=a/date=2024-11-01/part-p.parquet"  # an erasure writing right now (index entry, no commit)
    erase = VersionRecord(2, log_bytes=b"{}", actions=[])
    erase.manifest = {"body": {"operation": "erase", "files_scrubbed": [
        {"original": "topic=a/date=2024-11-01/part-1.parquet", "replacement": replacement}]}}  # fmt: skip
    files = dict([_file(replacement, OLD), _file(pending, OLD), _file("topic=a/date=2024-11-01/part-x.parquet", OLD)])
    index = [{"request_id": "R", "version": None, "replacements": {"topic=a/date=2024-11-01/part-2.parquet": pending}}]
    chain = [_rec(0), _rec(1, "topic=a/date=2024-11-01/part-1.parquet"), erase]
    assert orphan_files(chain, files, NOW, index) == ["topic=a/date=2024-11-01/part-x.parquet"]
