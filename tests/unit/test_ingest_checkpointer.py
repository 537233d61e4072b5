"""The appender's checkpoints (``pipeline.ingest.checkpointer``) against delta-rs's own, on local lakes.

kbak writes a checkpoint as the previous one plus the entries since. Whatever wrote it, a reader must
find the same table: the same live files, the same application transactions (ingest's exactly-once
state), the same tombstones inside Delta's window.
"""

from __future__ import annotations

import shutil
import time

import pyarrow.parquet as pq
from deltalake import DeltaTable
from support.custody_lakes import record_rows as rows

from pipeline.core.storage import Lake
from pipeline.core.table import app_id
from pipeline.custody.manifest import checkpoint_path
from pipeline.ingest.appender import LogAppender
from pipeline.ingest.commit import commit_records, ensure_table


def _stream(lake: Lake, commits: int, log: LogAppender | None = None, start: int = 0) -> LogAppender:
    dt = ensure_table(lake)
    log = log or LogAppender.open(lake, dt)
    for i in range(start, start + commits):
        p = i % 3
        expected = log.txns.get(app_id("c", "t", p))
        res = commit_records(lake, dt, rows("t", p, (i // 3) * 4, 4), {("t", p): expected}, source_cluster="c",
                             backup_id="b", log=log)  # fmt: skip
        assert not res.rejected
    return log


def _writer(lake: Lake, version: int) -> str:
    return pq.read_metadata(lake.path(checkpoint_path(version))).created_by


def _state(root: str, version: int) -> tuple[set, dict, set]:
    """What a reader of ``version`` finds: live files, transactions, and the tombstones its checkpoint lists."""
    dt = DeltaTable(root, version=version)
    files = set(dt.get_add_actions(flatten=True).column("path").to_pylist())
    txns = {p: dt.transaction_version(app_id("c", "t", p)) for p in range(3)}
    tomb = pq.read_table(f"{root}/{checkpoint_path(version)}", columns=["remove"])
    tombstones = {r["path"] for r in tomb.column("remove").to_pylist() if r}
    return files, txns, tombstones


def _as_delta_rs_writes_it(lake: Lake, version: int, tmp_path) -> str:
    """A copy of the lake with delta-rs's own checkpoint at ``version`` in place of kbak's."""
    copy = tmp_path / f"delta-rs-{version}"
    shutil.copytree(lake.root, copy)
    for cp in (copy / "_delta_log").glob("*.checkpoint.parquet"):
        cp.unlink()
    (copy / "_delta_log" / "_last_checkpoint").unlink()
    DeltaTable(str(copy), version=version).create_checkpoint()
    return str(copy)


def test_incremental_checkpoints_hold_what_delta_rs_checkpoints_hold(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    _stream(lake, 35)
    # The first checkpoint of a process comes from delta-rs (nothing to start from), the next from kbak.
    assert "parquet-rs" in _writer(lake, 9)
    assert [("arrow" in _writer(lake, v)) for v in (19, 29)] == [True, True]
    for version in (19, 29):
        theirs = _as_delta_rs_writes_it(lake, version, tmp_path)
        assert _state(lake.root, version) == _state(theirs, version)
    files, txns, _ = _state(lake.root, 29)
    assert len(files) == 29 and txns == {0: 39, 1: 39, 2: 35}


def test_a_compaction_between_checkpoints_makes_delta_rs_write_the_next(tmp_path):
    from pipeline.lifecycle.compact import compact

    lake = Lake.at(tmp_path / "lake")
    log = _stream(lake, 12)
    compact(lake)  # version 13: removes the 12 small files, adds one
    log = _stream(lake, 12, log, start=12)  # versions 14-25: checkpoint at 19 (delta-rs), then kbak's at ...
    assert "parquet-rs" in _writer(lake, 19)
    log = _stream(lake, 10, log, start=24)
    assert "arrow" in _writer(lake, 29)
    theirs = _as_delta_rs_writes_it(lake, 29, tmp_path)
    files, txns, tombstones = _state(lake.root, 29)
    assert (files, txns, tombstones) == _state(theirs, 29)
    assert len(tombstones) == 12  # the compacted files, inside Delta's week


def test_tombstones_past_deltas_window_leave_the_next_checkpoint(tmp_path):
    from pipeline.lifecycle.compact import compact

    lake = Lake.at(tmp_path / "lake")
    log = _stream(lake, 6)
    DeltaTable(lake.uri).alter.set_table_properties({"delta.deletedFileRetentionDuration": "interval 1 second"})
    compact(lake)  # version 8
    log = _stream(lake, 2, log, start=6)  # checkpoint at 9 (delta-rs: a remove since the base)
    assert "parquet-rs" in _writer(lake, 9)
    time.sleep(1.2)
    _stream(lake, 10, log, start=8)  # checkpoint at 19: kbak's, from 9's rows, the tombstones now expired
    assert "arrow" in _writer(lake, 19)
    assert _state(lake.root, 19)[2] == set()
    assert _state(lake.root, 19)[:2] == _state(_as_delta_rs_writes_it(lake, 19, tmp_path), 19)[:2]
