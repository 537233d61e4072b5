"""Lifecycle pieces on a local lake built through kbak's own commit path (no broker, no S3)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from pipeline.core.errors import KbakError
from pipeline.core.schema import FILE_SCHEMA, RECORD_SCHEMA
from pipeline.core.storage import Lake
from pipeline.custody.chain import VersionRecord
from pipeline.custody.digest import RecordDigest, combine, record_digest
from pipeline.ingest.commit import commit_records, ensure_table
from pipeline.lifecycle import checkpoints
from pipeline.lifecycle.compact import compact_group, plan
from pipeline.lifecycle.retention import removed_offsets
from pipeline.lifecycle.vacuum import removed_file_retention

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _rows(n: int, start: int = 0) -> list[dict]:
    return [
        {"topic": "a", "partition": i % 2, "offset": start + i, "timestamp": T0 + timedelta(minutes=i),
         "timestamp_type": "create", "key": None if i % 3 == 0 else b"k%d" % i, "value": b"v%d" % i,
         "headers": [{"key": "h", "value": None}] if i % 2 else [], "date": T0.date(), "source_cluster": "c",
         "ingested_at": T0}
        for i in range(n)
    ]  # fmt: skip


def _lake(tmp_path, commits: int = 6) -> Lake:
    lake = Lake.at(tmp_path / "lake")
    dt = ensure_table(lake)
    expected: dict = {}
    for c in range(commits):
        table = pa.Table.from_pylist(
            [dict(r, offset=c * 10 + i // 2) for i, r in enumerate(_rows(20))], schema=RECORD_SCHEMA
        )
        res = commit_records(lake, dt, table, dict(expected), source_cluster="c", backup_id="b")
        expected.update(res.committed)
    return lake


def test_record_digest_ignores_order_and_file_split_but_not_content():
    t = pa.Table.from_pylist(_rows(30), schema=RECORD_SCHEMA).select(FILE_SCHEMA.names)
    whole = record_digest(t, "a")
    assert whole == record_digest(t.take(list(reversed(range(30)))), "a")
    assert whole == combine([record_digest(t.slice(0, 7), "a"), record_digest(t.slice(7), "a")])
    assert whole == RecordDigest.from_dict(whole.as_dict())
    assert whole != record_digest(t, "b")  # the topic counts
    assert whole != record_digest(t.slice(1), "a")  # a lost record
    assert whole != record_digest(pa.concat_tables([t, t.slice(0, 1)]), "a")  # a duplicated one
    changed = t.set_column(t.schema.get_field_index("value"), "value", pa.array([b"x"] * 30, pa.binary()))
    assert whole != record_digest(changed, "a")


def test_two_compactions_of_the_same_day_never_archive_a_record_twice(tmp_path):
    lake = _lake(tmp_path)
    first, second = plan(lake, target_file_size=1 << 20), plan(lake, target_file_size=1 << 20)
    compact_group(lake, first[0], 1 << 20)
    files_after_first = set(lake.list_files("topic=a"))
    with pytest.raises(KbakError, match="removed by another commit"):
        compact_group(lake, second[0], 1 << 20)
    assert DeltaTable(lake.uri).count() == 6 * 20
    assert set(lake.list_files("topic=a")) == files_after_first  # the loser's files are gone
    assert lake.list_files("_kbak/custody/staged") == []  # and so is its staged body


def test_compaction_below_one_mib_is_refused(tmp_path):
    with pytest.raises(KbakError, match="below 1 MiB"):
        plan(_lake(tmp_path, 1), target_file_size=1000)


def test_removed_offsets_are_contiguous_runs_per_partition():
    rows = pa.table({"partition": pa.array([0, 0, 0, 1, 0, 1], pa.int32()), "offset": [1, 2, 3, 7, 9, 8]})
    assert removed_offsets([("t", rows)], "retention") == [
        {"topic": "t", "partition": 0, "first_offset": 1, "last_offset": 3, "records": 3, "reason": "retention"},
        {"topic": "t", "partition": 0, "first_offset": 9, "last_offset": 9, "records": 1, "reason": "retention"},
        {"topic": "t", "partition": 1, "first_offset": 7, "last_offset": 8, "records": 2, "reason": "retention"},
    ]


def test_removed_file_retention_is_read_from_the_table(tmp_path):
    dt = DeltaTable(_lake(tmp_path, 1).uri)
    assert removed_file_retention(dt) == timedelta(days=2557)
    assert date(2024, 1, 1) + removed_file_retention(dt) > date(2030, 12, 31)


@pytest.mark.parametrize(
    ("configuration", "days"),
    [
        # An archive kbak created before it had its own property: Delta's window was seven years too.
        ({"delta.deletedFileRetentionDuration": "interval 2557 days"}, 2557),
        # Delta's window only bounds the tombstones in checkpoints: kbak's property decides.
        (
            {
                "delta.deletedFileRetentionDuration": "interval 7 days",
                "kbak.removedFileRetentionDuration": "interval 30 days",
            },
            30,
        ),
    ],
)
def test_removed_file_retention_of_older_and_configured_archives(tmp_path, configuration, days):
    DeltaTable.create(
        str(tmp_path / "t"), schema=RECORD_SCHEMA, configuration=configuration, raise_if_key_not_exists=False
    )
    assert removed_file_retention(DeltaTable(str(tmp_path / "t"))) == timedelta(days=days)


def test_vacuum_keeps_the_newest_checkpoint_the_first_of_each_thousand_and_the_last_day(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    now = datetime(2026, 6, 1, tzinfo=UTC)
    old, recent = now - timedelta(days=3), now - timedelta(hours=2)
    chain = []
    for v in range(9, 3000, 10):  # where delta-rs puts them: every 10 versions, from version 9
        lake.write_bytes(f"_delta_log/{v:020d}.checkpoint.parquet", b"checkpoint %d" % v)
        stamp = recent if v >= 2950 else old
        info = {"commitInfo": {"timestamp": int(stamp.timestamp() * 1000)}}
        chain.append(VersionRecord(v, actions=[info], manifest={"checkpoint_sha256": f"sealed-{v}"}))
    gone = checkpoints.superseded(lake, chain, {p: lake.size(p) for p in lake.list_files()}, now)
    kept = set(range(9, 3000, 10)) - {c.version for c in gone}
    assert kept == {9, 1009, 2009} | set(range(2959, 3000, 10))  # first of each thousand; the last day
    assert all(c.sha256 == f"sealed-{c.version}" and c.size == len(b"checkpoint %d" % c.version) for c in gone)
