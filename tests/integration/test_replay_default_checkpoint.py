"""Replaying the same selection twice does not double the target (issue 14.3): every replay keeps a
checkpoint in the lake (``_kbak/replay/<digest>.json``) unless given ``--checkpoint``; a rerun resumes or
does nothing, ``--again`` asks for a fresh copy, and a read-only lake keeps it in a local state dir."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from support.kbak_testing import KBAK, consume_all, content, produce, run_json, run_kbak
from support.s3_fault_proxy import FaultProxy

from pipeline.dev.sample import create_topics

PARTITIONS = 3
PER_PARTITION = 100
TOTAL = PARTITIONS * PER_PARTITION


def _records(source: str) -> list[dict]:
    return [
        {"topic": source, "partition": i % PARTITIONS, "key": b"k%d" % i, "value": b"v%d" % i, "headers": [("n", b"1")]}
        for i in range(TOTAL)
    ]


@pytest.fixture()
def lake(kafka, tmp_path, topic_name):
    source = topic_name("again-src")
    create_topics(kafka.bootstrap, {source: PARTITIONS})
    produce(kafka.bootstrap, _records(source))
    path = str(tmp_path / "lake")
    run_json("ingest", "-b", kafka.bootstrap, "--topics", source, "--lake", path, "--once", "--flush-records", "100")
    return {"path": path, "source": source, "records": consume_all(kafka.bootstrap, source, PARTITIONS)}


def replay_args(kafka, lake, target, *extra: str) -> tuple[str, ...]:
    mapping = f"{lake['source']}={target}"
    return ("replay", "--lake", lake["path"], "-b", kafka.bootstrap, "--topic-map", mapping, "--create-topics", *extra)


def checkpoints(lake) -> list[Path]:
    return sorted((Path(lake["path"]) / "_kbak" / "replay").glob("*.json"))


def test_rerun_is_a_no_op_and_again_makes_a_fresh_copy(kafka, lake, topic_name):
    target = topic_name("again-dst")
    first = run_json(*replay_args(kafka, lake, target))
    assert (first["status"], first["records"]) == ("complete", TOTAL)
    [ckpt] = checkpoints(lake)
    assert first["checkpoint"] == str(ckpt) and json.loads(ckpt.read_text())["complete"] is True

    again = run_kbak(*replay_args(kafka, lake, target), check=True)  # a retried restore: nothing doubles
    assert again.stdout.startswith("nothing to do: already delivered by replay at ")
    version = first["table_version"]
    assert f"({TOTAL} records of table version {version} to {kafka.bootstrap}); use --again for a fresh copy" in (
        again.stdout
    )
    rerun = run_json(*replay_args(kafka, lake, target))
    assert (rerun["status"], rerun["records"], rerun["skipped_by_checkpoint"]) == ("complete", 0, TOTAL)
    assert rerun["already_delivered_at"] == json.loads(ckpt.read_text())["completed_at"]
    assert content(consume_all(kafka.bootstrap, target, PARTITIONS)) == content(lake["records"])

    fresh = run_json(*replay_args(kafka, lake, target, "--again"))  # asked for: a second copy
    assert (fresh["status"], fresh["records"], fresh["skipped_by_checkpoint"]) == ("complete", TOTAL, 0)
    assert len(consume_all(kafka.bootstrap, target, PARTITIONS)) == 2 * TOTAL
    assert run_json(*replay_args(kafka, lake, target))["records"] == 0  # and that copy is remembered too

    other = topic_name("again-other")  # another target (mapping) is another replay: its own checkpoint
    assert run_json(*replay_args(kafka, lake, other))["records"] == TOTAL
    assert len(checkpoints(lake)) == 2


def test_killed_replay_rerun_without_flags_completes_exactly_once(kafka, lake, topic_name):
    target = topic_name("again-kill")
    proc = subprocess.Popen([KBAK, *replay_args(kafka, lake, target, "--rate-limit", "60", "--quiet")])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = checkpoints(lake)
        if found and json.loads(found[0].read_text())["records_delivered"] >= 30:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the replay checkpointed nothing within 60s")
    time.sleep(0.3)  # between two checkpoint writes
    proc.kill()
    proc.wait(30)
    on_target = len(consume_all(kafka.bootstrap, target, PARTITIONS))

    rest = run_json(*replay_args(kafka, lake, target))
    assert rest["skipped_by_checkpoint"] == on_target and rest["records"] == TOTAL - on_target
    assert content(consume_all(kafka.bootstrap, target, PARTITIONS)) == content(lake["records"])


def test_read_only_s3_lake_keeps_the_checkpoint_locally(kafka, s3, bucket, topic_name, tmp_path):
    """An auditor's lake they may read but not write: the checkpoint goes to $XDG_STATE_HOME/kbak/replay."""
    source, target = topic_name("ro-src"), topic_name("ro-dst")
    create_topics(kafka.bootstrap, {source: PARTITIONS})
    produce(kafka.bootstrap, _records(source))
    uri = f"s3://{bucket}/lake"
    run_json("ingest", "-b", kafka.bootstrap, "--topics", source, "--lake", uri, "--once", env=s3.env())
    state = tmp_path / "state"
    env = {**s3.env(), "XDG_STATE_HOME": str(state)}
    with FaultProxy(s3.endpoint) as proxy:
        proxy.fail_with = (403, "AccessDenied")
        proxy.fail_when = lambda method, path: method in ("PUT", "POST", "DELETE")
        args = ("replay", "--lake", uri, "--s3-endpoint", proxy.endpoint, "-b", kafka.bootstrap)
        args += ("--topic-map", f"{source}={target}", "--create-topics")
        first = run_json(*args, env=env)
        assert (first["status"], first["records"]) == ("complete", TOTAL)
        [local] = sorted((state / "kbak" / "replay").glob("*.json"))
        assert first["checkpoint"] == str(local)
        assert "ACCESS_DENIED" in first["checkpoint_note"], first["checkpoint_note"]
        assert first["checkpoint_note"].endswith(f"it is kept at {local}")
        assert proxy.failed >= 1
        rerun = run_json(*args, env=env)
        assert (rerun["records"], rerun["checkpoint"]) == (0, str(local))
    assert len(consume_all(kafka.bootstrap, target, PARTITIONS)) == TOTAL
    assert not s3.client().list_objects_v2(Bucket=bucket, Prefix="lake/_kbak/replay/").get("Contents")
