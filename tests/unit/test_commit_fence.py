"""The fence of ``pipeline.ingest.commit``, checked against delta-rs itself (local lakes, real commits).

Two workers hold DeltaTable objects on one lake. delta-rs fails a commit whose application
transactions a commit landed after its read version also set; kbak then re-fences and reports the
rows rejected. Without that conflict check, a commit landing between a worker's fence and its own
commit would archive a partition's offsets twice. ``KnownTxns`` (the values a worker read or
committed at one version) must spare the log reads without ever letting such a commit through.
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
from pipeline.ingest.fence import KnownTxns


def _two_workers(tmp_path) -> tuple[Lake, DeltaTable, DeltaTable]:
    lake = Lake.at(tmp_path / "lake")
    dt = ensure_table(lake)
    commit_records(lake, dt, rows("t", 0, 0, 5), {("t", 0): None}, source_cluster="c", backup_id="a")
    a, b = DeltaTable(lake.uri), DeltaTable(lake.uri)
    assert a.version() == b.version() == 1
    return lake, a, b


def _commit(lake: Lake, dt: DeltaTable, partition: int, first: int, n: int, expected, known=None, who="b"):
    return commit_records(
        lake, dt, rows("t", partition, first, n), {("t", partition): expected},
        source_cluster="c", backup_id=who, known=known,
    )  # fmt: skip


def _txn_commit(dt: DeltaTable, partition: int, offset: int) -> None:
    """A bare commit (no files) setting one partition's application transaction, as ingest's commit does."""
    props = CommitProperties(app_transactions=[Transaction(app_id("c", "t", partition), offset)], max_commit_retries=10)
    dt.create_write_transaction([], mode="append", schema=RECORD_SCHEMA, partition_by=PARTITION_COLUMNS,
                                commit_properties=props)  # fmt: skip


def _race_before_commit(monkeypatch, action) -> list:
    """Run ``action`` (another worker's commit) once, after the next fence held and before its commit."""
    raced: list = []

    def race(point: str) -> None:
        if point == "before-commit" and not raced:
            raced.append(None)  # once: the other worker's own commit passes here too
            raced[0] = action()

    monkeypatch.setattr(commit, "_fault", race)
    return raced


def _offsets(lake: Lake, partition: int) -> list[int]:
    t = DeltaTable(lake.uri).to_pyarrow_table(columns=["partition", "offset"])
    return sorted(
        o
        for p, o in zip(t.column("partition").to_pylist(), t.column("offset").to_pylist(), strict=True)
        if p == partition
    )


def _count_log_reads(monkeypatch, dt: DeltaTable) -> list[str]:
    reads: list[str] = []
    real = dt.transaction_version
    monkeypatch.setattr(dt, "transaction_version", lambda app: reads.append(app) or real(app))
    return reads


def test_delta_rs_fails_a_commit_whose_app_transaction_a_later_version_set(tmp_path):
    lake, a, b = _two_workers(tmp_path)
    _txn_commit(a, 0, 9)
    with pytest.raises(CommitFailedError):
        _txn_commit(b, 0, 9)  # b still reads version 1: the same partition's transaction moved meanwhile
    _txn_commit(b, 1, 4)  # another partition's transaction: delta-rs commits it after a's version
    assert [DeltaTable(lake.uri).transaction_version(app_id("c", "t", p)) for p in (0, 1)] == [9, 4]


def test_own_table_object_stays_one_version_behind_its_commit(tmp_path):
    """Why the fence still calls update_incremental: delta-rs does not advance the committing DeltaTable."""
    lake, a, _ = _two_workers(tmp_path)
    _commit(lake, a, 0, 5, 5, 4)
    assert a.version() == 1 and DeltaTable(lake.uri).version() == 2


@pytest.mark.parametrize("with_known", [False, True])
def test_commit_landing_between_fence_and_commit_is_rejected_not_duplicated(tmp_path, monkeypatch, with_known):
    lake, a, b = _two_workers(tmp_path)
    known = KnownTxns() if with_known else None
    if known is not None:
        known.read(1, {("t", 0): 4})  # b read the log at version 1 itself
    raced = _race_before_commit(monkeypatch, lambda: _commit(lake, a, 0, 5, 5, 4, who="a"))
    res = _commit(lake, b, 0, 5, 5, 4, known)
    assert raced[0].version == 2
    assert res.version is None and res.records == 0 and res.rejected == {("t", 0): 9}

    dt = DeltaTable(lake.uri)
    assert dt.version() == 2 and dt.transaction_version(app_id("c", "t", 0)) == 9
    assert _offsets(lake, 0) == list(range(10))  # each offset once: b's rows were not committed
    assert not lake.list_files(manifest.STAGED_DIR)  # b's staged body was removed with its lost commit
    if known is not None:
        assert known.at(2) == {("t", 0): 9}  # re-read from the log at the new version


def test_a_worker_committing_alone_reads_no_fence_from_the_log(tmp_path, monkeypatch):
    lake = Lake.at(tmp_path / "lake")
    dt = ensure_table(lake)
    known = KnownTxns()
    reads = _count_log_reads(monkeypatch, dt)
    last = {0: None, 1: None}
    for i in range(12):  # crosses a checkpoint (interval 10)
        p = i % 2
        res = _commit(lake, dt, p, (i // 2) * 5, 5, last[p], known)
        assert res.version == i + 1 and not res.rejected
        last[p] = res.committed[("t", p)]
    assert reads == [app_id("c", "t", 0), app_id("c", "t", 1)]  # each partition once, when first seen
    assert known.version == 12 and known.values == {("t", 0): 29, ("t", 1): 29}
    assert _offsets(lake, 0) == _offsets(lake, 1) == list(range(30))

    # A caller expecting other than what the log holds is refused as by a read of the log.
    res = _commit(lake, dt, 0, 30, 5, 24, known)
    assert res.version is None and res.rejected == {("t", 0): 29} and len(reads) == 2


def test_known_values_of_a_version_another_worker_moved_past_are_not_used(tmp_path, monkeypatch):
    lake, a, b = _two_workers(tmp_path)
    known = KnownTxns()
    assert _commit(lake, b, 0, 5, 5, 4, known).version == 2 and known.at(2) == {("t", 0): 9}
    assert _commit(lake, a, 0, 10, 5, 9, who="a").version == 3  # a takes the partition over
    res = _commit(lake, b, 0, 10, 5, 9, known)
    assert res.version is None and res.rejected == {("t", 0): 14}
    assert _offsets(lake, 0) == list(range(15))


def test_a_commit_made_over_another_forgets_what_the_other_may_have_moved(tmp_path, monkeypatch):
    """b knows partition 1 at the version it read; a moves partition 1 before b's partition-0 commit lands.

    delta-rs commits b's partition 0 after a's commit (no conflict): b must not carry its old value
    of partition 1 to its new version, or its next partition-1 commit would archive a's offsets again.
    """
    lake, a, b = _two_workers(tmp_path)
    known = KnownTxns()
    assert _commit(lake, b, 1, 0, 5, None, known).version == 2
    a.update_incremental()
    _race_before_commit(monkeypatch, lambda: _commit(lake, a, 1, 5, 5, 4, who="a"))
    assert _commit(lake, b, 0, 5, 5, 4, known).version == 4  # over a's version 3
    assert known.at(4) == {("t", 0): 9}
    res = _commit(lake, b, 1, 5, 5, 4, known)
    assert res.version is None and res.rejected == {("t", 1): 9}
    assert _offsets(lake, 1) == list(range(10))
