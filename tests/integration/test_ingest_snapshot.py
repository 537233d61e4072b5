"""``--once`` is a complete snapshot or a failure: partitions other group members hold are not skipped.

Issue 14.1: a ``--once`` run in the group of just-killed workers was assigned only some partitions
(the dead member held the rest until its session expired) and still exited 0.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from deltalake import DeltaTable
from support.kbak_testing import KBAK, archive_rows, consume_all, produce, run_kbak

from pipeline.core.errors import KbakError
from pipeline.core.metrics import IngestMetrics
from pipeline.core.storage import Lake
from pipeline.dev.sample import create_topics
from pipeline.ingest import IngestOptions, ingest

PARTS = 4


def _count(lake) -> int:
    try:
        return DeltaTable(str(lake)).count()
    except Exception:
        return 0


def _records(topic: str, n: int, tag: str) -> list[dict]:
    return [{"topic": topic, "partition": i % PARTS, "value": f"{tag}:{i}".encode()} for i in range(n)]


def _kill_a_member_holding_everything(kafka, lake, topic: str, group: str, tag: str) -> None:
    """A continuous worker of ``group`` archives what there is, is SIGKILLed, then more is produced."""
    before = _count(lake)
    produce(kafka.bootstrap, _records(topic, 40, f"{tag}-before"))
    worker = subprocess.Popen(
        [KBAK, "ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--group-id", group,
         "--flush-seconds", "0.2", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while _count(lake) < before + 40 and time.monotonic() < deadline:
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    assert _count(lake) >= before + 40, "the worker did not archive in time"
    produce(kafka.bootstrap, _records(topic, 40, f"{tag}-after"))  # the dead member still holds these


def _group_with_a_dead_member(kafka, tmp_path, topic: str) -> tuple:
    group = f"g-{topic}"
    create_topics(kafka.bootstrap, {topic: PARTS})
    lake = tmp_path / "lake"
    _kill_a_member_holding_everything(kafka, lake, topic, group, "a")
    return group, lake


@pytest.mark.parametrize("timeout_from", ["flag", "yaml"])
def test_once_in_a_group_with_a_dead_member_fails_naming_the_partitions_it_lacks(
    kafka, tmp_path, topic_name, timeout_from
):
    topic = topic_name("snap")
    group, lake = _group_with_a_dead_member(kafka, tmp_path, topic)
    # Shorter than the dead member's session (6 s): the snapshot cannot complete, and says so.
    if timeout_from == "flag":
        timeout = ("--snapshot-timeout", "1")
    else:
        config = tmp_path / "backup.yaml"
        config.write_text("backup:\n  continuous: false\n  snapshot_timeout_seconds: 1\n")
        timeout = ("--config", str(config))
    started = time.monotonic()
    proc = run_kbak("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--once",
                    "--group-id", group, *timeout, "--quiet")  # fmt: skip
    assert time.monotonic() - started < 30  # the 1 s wait, not the 60 s default
    assert proc.returncode != 0, proc.stdout
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("kbak: error: snapshot incomplete") and "Traceback" not in proc.stderr
    assert f"{topic}[" in error and "behind" in error and "--snapshot-timeout" in error


def test_once_in_a_group_with_a_dead_member_waits_for_its_partitions(kafka, tmp_path, topic_name):
    # (A separate group from the test above: on Tansu a member that leaves while the group is still
    # joining, as that test's run does, can leave the group stuck, which would only test Tansu.)
    topic = topic_name("snapw")
    group, lake = _group_with_a_dead_member(kafka, tmp_path, topic)
    proc = run_kbak("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--once",
                    "--group-id", group, "--snapshot-timeout", "60", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["records"] == 40  # everything the dead member had not archived
    assert archive_rows(str(lake), topic=topic) == consume_all(kafka.bootstrap, topic, PARTS)


def test_incomplete_snapshot_counts_as_a_failed_run(kafka, tmp_path, topic_name):
    topic = topic_name("snapm")
    group, lake = _group_with_a_dead_member(kafka, tmp_path, topic)
    metrics = IngestMetrics()
    opts = IngestOptions(kafka.bootstrap, Lake.at(lake), [topic], once=True, group_id=group)
    opts.snapshot_timeout_seconds = 1
    with pytest.raises(KbakError, match="snapshot incomplete"):
        ingest(opts, metrics=metrics)
    assert metrics.registry.get_sample_value("kafka_backup_backups_total", {"outcome": "failure"}) == 1
    assert metrics.registry.get_sample_value("kafka_backup_backups_total", {"outcome": "success"}) is None


def test_transaction_commit_marker_at_the_end_is_not_a_missing_record(kafka, tmp_path, topic_name):
    """The end offset of a transactional partition is past a commit marker, which is never archived."""
    from confluent_kafka import Producer

    topic = topic_name("snaptx")
    create_topics(kafka.bootstrap, {topic: 1})
    p = Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": f"tx-{topic}"})
    p.init_transactions()
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, b"t%d" % i)
    p.commit_transaction()
    lake = tmp_path / "lake"
    started = time.monotonic()
    proc = run_kbak("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--once",
                    "--snapshot-timeout", "30", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 25  # done at once, not after waiting out the timeout
    assert archive_rows(str(lake), topic=topic) == consume_all(kafka.bootstrap, topic, 1)


def test_interrupted_once_run_is_not_a_success(kafka, tmp_path, topic_name):
    """SIGINT commits what was read, but an unfinished snapshot exits non-zero and names what is missing."""
    topic = topic_name("snapint")
    create_topics(kafka.bootstrap, {topic: 2})
    produce(kafka.bootstrap, [{"topic": topic, "partition": i % 2, "value": b"%d" % i} for i in range(20_000)])
    lake = tmp_path / "lake"
    proc = subprocess.Popen(
        [KBAK, "ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--once", "--quiet",
         "--flush-records", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while _count(lake) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    archived = _count(lake)
    assert 0 < archived < 20_000, "the run finished before it could be interrupted"
    assert proc.returncode != 0
    assert "kbak: error: interrupted before the snapshot was complete" in err and f"{topic}[" in err
