"""Stopped replays resumed with ``--checkpoint`` deliver every record exactly once (CLI, real broker)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from confluent_kafka.admin import AdminClient
from support.kbak_testing import KBAK, consume_all, content, one_line_error, produce, run_json, run_kbak

from pipeline.dev.sample import create_topics

PARTITIONS = 3
PER_PARTITION = 150


@pytest.fixture()
def lake(kafka, tmp_path, topic_name):
    source = topic_name("resume-src")
    create_topics(kafka.bootstrap, {source: PARTITIONS})
    records = [
        {
            "topic": source,
            "partition": i % PARTITIONS,
            "key": b"k%d" % i,
            "value": (b"x" * 2000 if i == 301 else b"v%d" % i),  # one big record in partition 1, offset 100
            "headers": [("n", b"%d" % i)],
        }
        for i in range(PARTITIONS * PER_PARTITION)
    ]
    produce(kafka.bootstrap, records)
    path = str(tmp_path / "lake")
    run_json("ingest", "-b", kafka.bootstrap, "--topics", source, "--lake", path, "--once", "--flush-records", "100")
    return {"path": path, "source": source, "records": consume_all(kafka.bootstrap, source, PARTITIONS)}


def replay_args(kafka, lake, target, ckpt, *extra):
    return (
        "replay",
        "--lake",
        lake["path"],
        "-b",
        kafka.bootstrap,
        "--topic-map",
        f"{lake['source']}={target}",
        "--create-topics",
        "--checkpoint",
        str(ckpt),
        *extra,
    )


def test_max_records_then_resume_delivers_each_record_once(kafka, lake, topic_name, tmp_path):
    target, ckpt = topic_name("resume-dst"), tmp_path / "state" / "replays" / "replay.ckpt"  # made, as --output
    total = PARTITIONS * PER_PARTITION

    first = run_json(*replay_args(kafka, lake, target, ckpt, "--max-records", "200"))
    assert (first["status"], first["records"]) == ("stopped", 200)
    saved = json.loads(ckpt.read_text())
    assert saved["records_delivered"] == 200 and saved["complete"] is False
    # the source is read partition by partition in offset order: partition 0 complete, partition 1 up to 49
    assert [(p["partition"], p["last_delivered_offset"]) for p in saved["partitions"]] == [(0, 149), (1, 49)]

    second = run_json(*replay_args(kafka, lake, target, ckpt))
    assert (second["status"], second["records"], second["skipped_by_checkpoint"]) == ("complete", total - 200, 200)
    third = run_json(*replay_args(kafka, lake, target, ckpt))
    assert (third["status"], third["records"]) == ("complete", 0)

    assert content(consume_all(kafka.bootstrap, target, PARTITIONS)) == content(lake["records"])


def test_interrupted_replay_resumes_exactly_once(kafka, lake, topic_name, tmp_path):
    target, ckpt = topic_name("sigterm-dst"), tmp_path / "replay.ckpt"
    proc = subprocess.Popen(
        [KBAK, *replay_args(kafka, lake, target, ckpt, "--rate-limit", "100", "--json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until it has delivered (and checkpointed) some records
        if ckpt.exists() and json.loads(ckpt.read_text())["records_delivered"] >= 30:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err
    partial = json.loads(out)
    assert partial["status"] == "interrupted" and 30 <= partial["records"] < PARTITIONS * PER_PARTITION
    assert err.strip().splitlines() == [
        f"kbak: error: replay interrupted; {partial['records']} records were delivered and are recorded in "
        f"checkpoint {ckpt}"
    ]
    assert json.loads(ckpt.read_text())["records_delivered"] == partial["records"]
    assert len(consume_all(kafka.bootstrap, target, PARTITIONS)) == partial["records"]

    rest = run_json(*replay_args(kafka, lake, target, ckpt))
    assert rest["records"] == PARTITIONS * PER_PARTITION - partial["records"]
    assert content(consume_all(kafka.bootstrap, target, PARTITIONS)) == content(lake["records"])


def test_failed_delivery_stops_reports_and_resumes(kafka, lake, topic_name, tmp_path):
    """A record the producer refuses (larger than -X message.max.bytes) stops the run; the checkpoint says
    exactly what was delivered, and a rerun without the limit delivers the rest once."""
    target, ckpt = topic_name("fail-dst"), tmp_path / "replay.ckpt"
    proc = run_kbak(*replay_args(kafka, lake, target, ckpt, "-X", "message.max.bytes=1500", "--json"))

    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "failed" in lines[0] and "offset 100 failed" in lines[0], proc.stderr
    # issue 14.14: the line says which settings to raise, and how big the record is
    assert "the record's key+value is 2004 bytes; raise the producer's limit with -X message.max.bytes=N" in lines[0]
    assert "the topic's max.message.bytes" in lines[0]
    partial = json.loads(proc.stdout)
    assert partial["status"] == "failed"
    delivered = {(p["partition"], p["last_delivered_offset"]) for p in partial["delivered"]}
    assert delivered == {(0, PER_PARTITION - 1), (1, 99)}  # everything before the refused record, nothing after
    assert partial["records"] == PER_PARTITION + 100 == len(consume_all(kafka.bootstrap, target, PARTITIONS))

    rest = run_json(*replay_args(kafka, lake, target, ckpt))
    assert rest["records"] == PARTITIONS * PER_PARTITION - partial["records"]
    assert content(consume_all(kafka.bootstrap, target, PARTITIONS)) == content(lake["records"])


def test_killed_replay_resumes_exactly_once(kafka, lake, topic_name, tmp_path):
    """SIGKILL leaves no chance to write the checkpoint: the rerun finds, on the target, the records the
    killed run delivered after its last checkpoint write, and does not produce them again."""
    target, ckpt = topic_name("sigkill-dst"), tmp_path / "replay.ckpt"
    proc = subprocess.Popen([KBAK, *replay_args(kafka, lake, target, ckpt, "--rate-limit", "60", "--quiet")])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ckpt.exists() and json.loads(ckpt.read_text())["records_delivered"] >= 30:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # between two checkpoint writes: some deliveries are not in the file yet
    proc.kill()
    proc.wait(30)
    in_checkpoint = json.loads(ckpt.read_text())["records_delivered"]
    on_target = len(consume_all(kafka.bootstrap, target, PARTITIONS))
    assert on_target >= in_checkpoint

    rest = run_json(*replay_args(kafka, lake, target, ckpt))
    assert rest["reconciled"] == on_target - in_checkpoint
    assert rest["skipped_by_checkpoint"] == on_target
    assert rest["records"] == PARTITIONS * PER_PARTITION - on_target
    assert content(consume_all(kafka.bootstrap, target, PARTITIONS)) == content(lake["records"])


def test_checkpoint_where_no_directory_can_be_made_is_one_line_and_produces_nothing(kafka, lake, topic_name, tmp_path):
    target = topic_name("ckpt-refused")
    (tmp_path / "a-file").write_text("not a directory")
    proc = run_kbak(*replay_args(kafka, lake, target, tmp_path / "a-file" / "replay.ckpt"))
    assert proc.returncode == 1
    assert "--checkpoint" in one_line_error(proc) and "cannot create directory" in one_line_error(proc)
    assert target not in AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=10).topics
