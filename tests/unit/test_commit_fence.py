"""The fence of ``pipeline.ingest.commit``, checked against delta-rs itself (local lakes, real commits).

Two workers hold DeltaTable objects on one lake. Each commits through its own ``LogAppender``, which
creates the next version's log entry only if no other writer did: a worker that loses the version
reads the winner's entry, re-fences and reports the rows rejected. Without that, a commit landing
between a worker's fence and its own commit would archive a partition's offsets twice. The values the
appender keeps must spare the log reads without ever letting such a commit through. A table whose
protocol asks for more than kbak writes is committed through delta-rs, whose own conflict check
(failing a commit whose application transactions a later version set) then does the same.
"""

from __future__ import annotations

import shutil

import pytest
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError
from support.custody_lakes import record_rows as rows

from pipeline.core.schema import PARTITION_COLUMNS, RECORD_SCHEMA
from pipeline.core.storage import Lake
from pipeline.core.table import app_id, committed_offsets
from pipeline.custody import manifest
from pipeline.ingest import commit
from pipeline.ingest.appender import LogAppender
from pipeline.ingest.commit import commit_records, ensure_table


def _two_workers(tmp_path) -> tuple[Lake, DeltaTable, DeltaTable]:
    lake = Lake.at(tmp_path / "lake")
    dt = ensure_table(lake)
    commit_records(lake, dt, rows("t", 0, 0, 5), {("t", 0): None}, source_cluster="c", backup_id="a")
    a, b = DeltaTable(lake.uri), DeltaTable(lake.uri)
    assert a.version() == b.version() == 1
    return lake, a, b


def _one_worker(tmp_path) -> tuple[Lake, DeltaTable, LogAppender]:
    """A new lake, and one worker's table object and appender on it."""
    lake = Lake.at(tmp_path / "lake")
    dt = ensure_table(lake)
    return lake, dt, LogAppender.open(lake, dt)


def _commit(lake: Lake, dt: DeltaTable, partition: int, first: int, n: int, expected, log=None, who="b"):
    return commit_records(
        lake, dt, rows("t", partition, first, n), {("t", partition): expected},
        source_cluster="c", backup_id=who, log=log,
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


@pytest.mark.parametrize("kept", [False, True])
def test_commit_landing_between_fence_and_commit_is_rejected_not_duplicated(tmp_path, monkeypatch, kept):
    lake, a, b = _two_workers(tmp_path)
    log = LogAppender.open(lake, b) if kept else None
    raced = _race_before_commit(monkeypatch, lambda: _commit(lake, a, 0, 5, 5, 4, who="a"))
    res = _commit(lake, b, 0, 5, 5, 4, log)
    assert raced[0].version == 2
    assert res.version is None and res.records == 0 and res.rejected == {("t", 0): 9}

    dt = DeltaTable(lake.uri)
    assert dt.version() == 2 and dt.transaction_version(app_id("c", "t", 0)) == 9
    assert _offsets(lake, 0) == list(range(10))  # each offset once: b's rows were not committed
    assert not lake.list_files(manifest.STAGED_DIR)  # b's staged body was removed with its lost commit
    if log is not None:
        assert log.version == 2 and log.txns[app_id("c", "t", 0)] == 9  # read from a's entry


def test_a_worker_committing_alone_reads_no_fence_from_the_log(tmp_path, monkeypatch):
    lake, dt, log = _one_worker(tmp_path)
    reads = _count_log_reads(monkeypatch, dt)
    last = {0: None, 1: None}
    for i in range(12):  # crosses a checkpoint (interval 10)
        p = i % 2
        res = _commit(lake, dt, p, (i // 2) * 5, 5, last[p], log)
        assert res.version == i + 1 and not res.rejected
        last[p] = res.committed[("t", p)]
    assert reads == [app_id("c", "t", 0), app_id("c", "t", 1)]  # each partition once, when first seen
    assert log.version == 12 and log.txns == {app_id("c", "t", 0): 29, app_id("c", "t", 1): 29}
    assert _offsets(lake, 0) == _offsets(lake, 1) == list(range(30))
    assert lake.exists(manifest.checkpoint_path(9))  # where delta-rs's own post-commit hook writes one

    # A caller expecting other than what the log holds is refused as by a read of the log.
    res = _commit(lake, dt, 0, 30, 5, 24, log)
    assert res.version is None and res.rejected == {("t", 0): 29} and len(reads) == 2


def test_values_of_a_partition_another_worker_moved_are_read_from_its_entry(tmp_path):
    lake, a, b = _two_workers(tmp_path)
    log = LogAppender.open(lake, b)
    assert _commit(lake, b, 0, 5, 5, 4, log).version == 2 and log.txns[app_id("c", "t", 0)] == 9
    assert _commit(lake, a, 0, 10, 5, 9, who="a").version == 3  # a takes the partition over
    res = _commit(lake, b, 0, 10, 5, 9, log)
    assert res.version is None and res.rejected == {("t", 0): 14}
    assert _offsets(lake, 0) == list(range(15))


def test_a_commit_made_over_another_keeps_what_the_other_moved(tmp_path, monkeypatch):
    """b knows partition 1; a moves partition 1 after b's fence of a partition-0 commit, before its commit.

    b's entry then lands after a's (no conflict: another partition): b must take a's value of
    partition 1 from a's entry, or its next partition-1 commit would archive a's offsets again.
    """
    lake, a, b = _two_workers(tmp_path)
    log = LogAppender.open(lake, b)
    assert _commit(lake, b, 1, 0, 5, None, log).version == 2
    a.update_incremental()
    _race_before_commit(monkeypatch, lambda: _commit(lake, a, 1, 5, 5, 4, who="a"))
    assert _commit(lake, b, 0, 5, 5, 4, log).version == 4  # over a's version 3
    assert log.txns[app_id("c", "t", 1)] == 9
    res = _commit(lake, b, 1, 5, 5, 4, log)
    assert res.version is None and res.rejected == {("t", 1): 9}
    assert _offsets(lake, 1) == list(range(10))


def test_a_protocol_beyond_what_kbak_writes_is_committed_through_delta_rs(tmp_path):
    """A check constraint (writer version 3) added mid-stream: the appender stops, delta-rs commits from then on."""
    lake, dt, log = _one_worker(tmp_path)
    assert _commit(lake, dt, 0, 0, 5, None, log).version == 1
    DeltaTable(lake.uri).alter.add_constraint({"small_offsets": '"offset" < 100'})
    assert _commit(lake, dt, 0, 5, 5, 4, log).version == 3
    assert not log.usable and LogAppender.open(lake, DeltaTable(lake.uri)) is None
    assert "delta-rs" in _engine(lake, 3) and "kbak/" in _engine(lake, 1)
    assert _commit(lake, dt, 0, 10, 5, 9, log).version == 4 and "delta-rs" in _engine(lake, 4)
    assert _offsets(lake, 0) == list(range(15))


def test_table_properties_set_meanwhile_are_taken_up(tmp_path):
    """A metadata-only commit (``kbak upgrade`` sets properties) does not stop the appender."""
    lake, dt, log = _one_worker(tmp_path)
    assert _commit(lake, dt, 0, 0, 5, None, log).version == 1
    DeltaTable(lake.uri).alter.set_table_properties({"delta.checkpointInterval": "3"})
    assert _commit(lake, dt, 0, 5, 5, 4, log).version == 3
    assert log.usable and log.checkpoint_interval == 3 and "kbak/" in _engine(lake, 3)
    assert lake.exists(manifest.checkpoint_path(5)) is False and log.checkpoint_due(5)


def _engine(lake: Lake, version: int) -> str:
    return manifest.commit_info(manifest.commit_actions(lake.read_bytes(manifest.log_path(version))))["engineInfo"]


def test_a_corrupt_entry_after_the_appenders_version_stops_the_commit(tmp_path):
    from pipeline.core.table import CorruptLogError

    lake, dt, log = _one_worker(tmp_path)
    assert _commit(lake, dt, 0, 0, 5, None, log).version == 1
    lake.write_bytes(manifest.log_path(2), b'{"commitInfo": {"timest')  # truncated by a broken writer
    with pytest.raises(CorruptLogError, match="00000000000000000002.json"):
        _commit(lake, dt, 0, 5, 5, 4, log)
    assert lake.read_bytes(manifest.log_path(2)) == b'{"commitInfo": {"timest' and not lake.exists(manifest.log_path(3))
    assert not lake.list_files(manifest.STAGED_DIR)


def test_workers_racing_for_versions_all_land_once(tmp_path):
    """Three workers (threads, each its own table object and appender) commit their own partitions at once.

    Every lost version is retried after the winner's entry: all 45 commits land, on consecutive
    versions, each offset once, and the checkpoints in between hold every transaction.
    """
    import threading

    lake = Lake.at(tmp_path / "lake")
    ensure_table(lake)
    landed: dict[int, list[int]] = {}

    def worker(partition: int) -> None:
        dt = DeltaTable(lake.uri)
        log = LogAppender.open(lake, dt)
        last = None
        for i in range(15):
            res = _commit(lake, dt, partition, i * 3, 3, last, log, who=f"w{partition}")
            assert not res.rejected
            last = res.committed[("t", partition)]
            landed.setdefault(partition, []).append(res.version)

    threads = [threading.Thread(target=worker, args=(p,)) for p in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    versions = sorted(v for vs in landed.values() for v in vs)
    assert versions == list(range(1, 46))
    dt = DeltaTable(lake.uri)
    assert dt.version() == 45 and [dt.transaction_version(app_id("c", "t", p)) for p in range(3)] == [44] * 3
    assert all(_offsets(lake, p) == list(range(45)) for p in range(3))
    assert [v for v in range(45) if lake.exists(manifest.checkpoint_path(v))] == [9, 19, 29, 39]
    replayed = tmp_path / "replayed"  # the same log without checkpoints: what the JSON entries alone say
    shutil.copytree(lake.root, replayed)
    for cp in (replayed / "_delta_log").glob("*checkpoint*"):
        cp.unlink()
    for v in (19, 39):
        ours, theirs = DeltaTable(lake.uri, version=v), DeltaTable(str(replayed), version=v)
        assert sorted(ours.file_uris()) == [u.replace(str(replayed), lake.root) for u in sorted(theirs.file_uris())]
        apps = [app_id("c", "t", p) for p in range(3)]
        assert [ours.transaction_version(a) for a in apps] == [theirs.transaction_version(a) for a in apps]


def test_a_one_off_commit_leaves_the_callers_table_at_its_version(tmp_path):
    """Without a kept appender, ``dt`` is brought to the commit: the next ``expected`` read from it holds.

    (A stale ``dt`` had every other commit of the query benchmark's build fenced off as a duplicate.)
    """
    lake = Lake.at(tmp_path / "lake")
    dt = ensure_table(lake)
    for i in range(4):
        expected = committed_offsets(dt, "c", [("t", 0)]).get(("t", 0))
        res = _commit(lake, dt, 0, i * 5, 5, expected)
        assert not res.rejected and res.version == dt.version() == i + 1
    assert committed_offsets(dt, "c", [("t", 0)]) == {("t", 0): 19}
