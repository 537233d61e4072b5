"""Checkpoints stay small as the archive ages: ``kbak vacuum`` deletes superseded ones, ``kbak upgrade`` moves
an older archive to a week of tombstones; time travel and custody still hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from deltalake import DeltaTable
from support.custody_lakes import NOV_1_2024_MS, count_records, ingest, records
from support.kbak_testing import one_line_error, produce, run_json, run_kbak

from pipeline.core.storage import Lake
from pipeline.custody.manifest import manifest_path
from pipeline.dev.sample import create_topics
from pipeline.ingest import commit


def test_vacuum_deletes_superseded_checkpoints_and_time_travel_still_reads(kafka, tmp_path, topic_name):
    topic = topic_name("checkpoints")
    create_topics(kafka.bootstrap, {topic: 3})
    produce(kafka.bootstrap, records(topic, 330, NOV_1_2024_MS, 60_000))
    lake = tmp_path / "lake"
    ingest(kafka, topic, str(lake), "--flush-records", "10")  # one version per 10 records
    L = ("--lake", str(lake))
    log = lake / "_delta_log"
    before = sorted(int(p.name[:20]) for p in log.glob("*.checkpoint.parquet"))
    assert len(before) >= 3 and before[1] - before[0] == 10, before  # delta.checkpointInterval 10
    mid = before[1] + 5  # time travel to a version between two checkpoints
    at_mid = count_records(lake, as_of=mid)
    assert 0 < at_mid < count_records(lake)

    # Younger than a day: a reader may have just chosen one; nothing goes.
    assert run_json("vacuum", *L)["checkpoints_deleted"] == []

    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    assert run_json("vacuum", *L, "--now", later, "--dry-run")["checkpoints_deleted"]
    assert sorted(int(p.name[:20]) for p in log.glob("*.checkpoint.parquet")) == before  # a dry run deletes nothing
    out = run_json("vacuum", *L, "--now", later)
    deleted = out["checkpoints_deleted"]
    # All but the newest and the first of versions 0-999 (older time travel replays at most ~1,000 entries).
    assert [c["version"] for c in deleted] == before[1:-1]
    for c in deleted:
        sealed = json.loads((lake / manifest_path(c["version"])).read_text())["checkpoint_sha256"]
        assert c["sha256"] == sealed and not (lake / c["path"]).exists()
    body = json.loads((lake / manifest_path(out["version"])).read_text())["body"]
    assert body["operation"] == "vacuum" and body["checkpoints_deleted"] == deleted
    assert sorted(int(p.name[:20]) for p in log.glob("*.checkpoint.parquet"))[:2] == [before[0], before[-1]]

    # Every log entry stays: time travel between the deleted checkpoints reads the same records.
    assert count_records(lake, as_of=mid) == at_mid
    assert DeltaTable(str(lake), version=mid).version() == mid
    proc = run_kbak("validate", *L, "--full", "--deep", "--format", "json")
    assert proc.returncode == 0, proc.stdout
    assert json.loads(proc.stdout)["valid"]
    again = run_json("vacuum", *L, "--now", later)
    assert again["checkpoints_deleted"] == [] and again["version"] is None

    # A checkpoint deleted behind kbak's back (no vacuum recorded it) is still a finding (the newest one:
    # the table no longer opens either, since _last_checkpoint names it).
    newest = before[-1]
    (log / f"{newest:020d}.checkpoint.parquet").unlink()
    proc = run_kbak("validate", *L, "--full", "--format", "json")
    assert proc.returncode != 0
    assert "checkpoint-digest" in {e["check"] for e in json.loads(proc.stdout)["errors"]}


OLD_CONFIGURATION = {  # as kbak created archives before it had kbak.removedFileRetentionDuration
    "delta.logRetentionDuration": "interval 2557 days",
    "delta.deletedFileRetentionDuration": "interval 2557 days",
    "delta.checkpointInterval": "10",
    "delta.dataSkippingStatsColumns": "partition,offset,timestamp,timestamp_type,source_cluster,ingested_at",
}


def test_upgrade_moves_an_older_archive_to_a_week_of_tombstones_on_the_record(kafka, tmp_path, topic_name, monkeypatch):
    lake = tmp_path / "lake"
    monkeypatch.setattr(commit, "TABLE_CONFIGURATION", OLD_CONFIGURATION)
    commit.ensure_table(Lake.at(lake))  # version 0, as an earlier kbak made it
    topic = topic_name("upgrade")
    create_topics(kafka.bootstrap, {topic: 3})
    produce(kafka.bootstrap, records(topic, 30, NOV_1_2024_MS, 60_000))
    ingest(kafka, topic, str(lake))
    L = ("--lake", str(lake))
    assert run_json("vacuum", *L)["removed_file_retention_days"] == 2557  # read from Delta's window

    dry = run_json("upgrade", *L, "--dry-run")
    assert dry["version"] is None and [c["property"] for c in dry["changes"]] == [
        "kbak.removedFileRetentionDuration",
        "delta.deletedFileRetentionDuration",
    ]
    assert "kbak.removedFileRetentionDuration" not in DeltaTable(str(lake)).metadata().configuration
    out = run_json("upgrade", *L)
    config = DeltaTable(str(lake)).metadata().configuration
    assert config["kbak.removedFileRetentionDuration"] == "interval 2557 days"  # the same promise
    assert config["delta.deletedFileRetentionDuration"] == "interval 7 days"
    body = json.loads((lake / manifest_path(out["version"])).read_text())["body"]
    assert body["operation"] == "upgrade" and body["properties"] == dry["changes"]
    assert run_json("vacuum", *L)["removed_file_retention_days"] == 2557
    assert count_records(lake) == 30
    proc = run_kbak("validate", *L, "--full", "--deep", "--format", "json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["valid"], proc.stdout

    again = run_kbak("upgrade", *L)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert DeltaTable(str(lake)).version() == out["version"]

    missing = run_kbak("upgrade", "--lake", str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and "no kbak archive" in one_line_error(missing)
