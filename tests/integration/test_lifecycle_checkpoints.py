"""``kbak vacuum`` deletes superseded Delta checkpoints on the record; time travel and custody still hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from deltalake import DeltaTable
from support.custody_lakes import NOV_1_2024_MS, count_records, ingest, records
from support.kbak_testing import produce, run_json, run_kbak

from pipeline.custody.manifest import manifest_path
from pipeline.dev.sample import create_topics


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
