"""The exactly-once argument of ``pipeline.ingest.commit``, checked against delta-rs itself.

Two workers hold DeltaTable objects on one lake, both read at the same version. delta-rs fails a
commit whose application transactions a commit landed after its read version also set; kbak then
re-fences and reports the rows rejected. Without that conflict check, a commit landing between a
worker's fence and its own commit would archive a partition's offsets twice.
"""

from __future__ import annotations

import pytest
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError
from support.custody_lakes import record_rows as rows

from pipeline.core.schema import PARTITION_COLUMNS, RECORD_SCHEMA
from pipeline.core.storage import Lake
from pipeline.core.table import app_id
from pipeline.custody import manifest
from pipeline.ingest import commit
from pipeline.ingest.commit import commit_records, ensure_table


def _two_workers(tmp_path) -> tuple[Lake, DeltaTable, DeltaTable]:
    lake = Lake.at(tmp_path / "lake")
    dt = ensure_table(lake)
    commit_records(lake, dt, rows("t", 0, 0, 5), {("t", 0): None}, source_cluster="c", backup_id="a")
    a, b = DeltaTable(lake.uri), DeltaTable(lake.uri)
    assert a.version() == b.version() == 1
    return lake, a, b


def _txn_commit(dt: DeltaTable, partition: int, offset: int) -> None:
    """A bare commit (no files) setting one partition's application transaction, as ingest's commit does."""
    props = CommitProperties(app_transactions=[Transaction(app_id("c", "t", partition), offset)], max_commit_retries=10)
    dt.create_write_transaction([], mode="append", schema=RECORD_SCHEMA, partition_by=PARTITION_COLUMNS,
                                commit_properties=props)  # fmt: skip


def test_delta_rs_fails_a_commit_whose_app_transaction_a_later_version_set(tmp_path):
    lake, a, b = _two_workers(tmp_path)
    _txn_commit(a, 0, 9)
    with pytest.raises(CommitFailedError):
        _txn_commit(b, 0, 9)  # b still reads version 1: the same partition's transaction moved meanwhile
    _txn_commit(b, 1, 4)  # another partition's transaction: delta-rs commits it after a's version
    assert [DeltaTable(lake.uri).transaction_version(app_id("c", "t", p)) for p in (0, 1)] == [9, 4]


def test_commit_landing_between_fence_and_commit_is_rejected_not_duplicated(tmp_path, monkeypatch):
    lake, a, b = _two_workers(tmp_path)
    raced: list = []

    def race(point: str) -> None:  # worker a commits offsets 5-9 after b's fence held, before b commits
        if point == "before-commit" and not raced:
            raced.append(None)  # once: a's own commit passes here too
            raced[0] = commit_records(lake, a, rows("t", 0, 5, 5), {("t", 0): 4}, source_cluster="c", backup_id="a")

    monkeypatch.setattr(commit, "_fault", race)
    res = commit_records(lake, b, rows("t", 0, 5, 5), {("t", 0): 4}, source_cluster="c", backup_id="b")
    assert raced[0].version == 2
    assert res.version is None and res.records == 0 and res.rejected == {("t", 0): 9}

    dt = DeltaTable(lake.uri)
    assert dt.version() == 2 and dt.transaction_version(app_id("c", "t", 0)) == 9
    offsets = sorted(dt.to_pyarrow_table(columns=["offset"]).column("offset").to_pylist())
    assert offsets == list(range(10))  # each offset once: b's rows were not committed
    assert not lake.list_files(manifest.STAGED_DIR)  # b's staged body was removed with its lost commit
