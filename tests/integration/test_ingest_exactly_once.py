"""Exactly once across kills, restarts and two workers sharing a consumer group (real broker)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time

import pytest
from deltalake import DeltaTable
from support.kbak_testing import KBAK, archive_rows, consume_all, produce, run_json, run_kbak

from pipeline.custody.manifest import manifest_path
from pipeline.dev.sample import create_topics


def _records(topic: str, n: int, partitions: int, tag: str) -> list[dict]:
    return [
        {"topic": topic, "partition": i % partitions, "key": f"{tag}-{i}".encode(), "value": f"{tag}:{i}".encode() * 3}
        for i in range(n)
    ]


def _data_files(lake) -> set[str]:
    return {str(p.relative_to(lake)) for p in lake.rglob("*.parquet")}


@pytest.mark.parametrize("point", ["after-write", "before-commit", "after-commit"])
def test_kill_at_commit_points_then_rerun(kafka, tmp_path, topic_name, point):
    topic = topic_name(f"kill-{point}")
    create_topics(kafka.bootstrap, {topic: 4})
    produce(kafka.bootstrap, _records(topic, 400, 4, "a"))
    lake = tmp_path / "lake"
    args = ("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--once", "--flush-records", "150")

    killed = run_kbak(*args, env={"KBAK_FAULT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    before = DeltaTable(str(lake)).count()
    assert before == (0 if point != "after-commit" else before)  # only a commit that finished is visible

    rerun = run_json(*args)
    source = consume_all(kafka.bootstrap, topic, 4)
    assert archive_rows(str(lake), topic=topic) == source
    assert rerun["records"] == len(source) - before

    dt = DeltaTable(str(lake))
    live = {a for a in dt.get_add_actions(flatten=True).column("path").to_pylist()}
    # Every version has its custody manifest, including the one the kill left unsealed.
    manifests = sorted(p.name for p in (lake / "_kbak" / "custody").glob("*.json"))
    assert len(manifests) == dt.version() + 1
    on_disk = _data_files(lake)
    if point in ("after-write", "before-commit"):
        orphans = on_disk - live
        assert orphans, "the killed run's files should be left behind, unreferenced"
        _vacuum_orphans(lake, orphans, live)
        assert archive_rows(str(lake), topic=topic) == source


def _vacuum_orphans(lake, orphans: set[str], live: set[str]) -> None:
    """Orphans are invisible to readers; ``kbak vacuum`` deletes them, on the record, once a day old."""
    # Younger ones may be an ingest about to commit: kept, whatever --now pretends.
    young = run_json("vacuum", "--lake", str(lake), "--now", "2099-01-01T00:00:00Z")
    assert young["files_deleted"] == [] and _data_files(lake) == live | orphans
    a_day_ago = time.time() - 25 * 3600
    digests = {}
    for rel in orphans:
        os.utime(lake / rel, (a_day_ago, a_day_ago))
        digests[rel] = hashlib.sha256((lake / rel).read_bytes()).hexdigest()
    dry = run_json("vacuum", "--lake", str(lake), "--dry-run")
    assert {f["path"] for f in dry["files_deleted"]} == orphans and _data_files(lake) == live | orphans
    proc = run_kbak("vacuum", "--lake", str(lake))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(orphan: written, never committed)") == len(orphans)
    assert _data_files(lake) == live
    body = json.loads((lake / manifest_path(DeltaTable(str(lake)).version())).read_text())["body"]
    assert body["operation"] == "vacuum"
    assert {f["path"]: f["sha256"] for f in body["files_deleted"]} == digests
    assert {f["reason"] for f in body["files_deleted"]} == {"orphan"}
    deep = run_kbak("validate", "--lake", str(lake), "--deep", "--format", "json")
    assert deep.returncode == 0, deep.stdout


def test_random_kills_mid_run_lose_and_duplicate_nothing(kafka, tmp_path, topic_name):
    topic = topic_name("killrand")
    create_topics(kafka.bootstrap, {topic: 3})
    produce(kafka.bootstrap, _records(topic, 3000, 3, "r"))
    lake = tmp_path / "lake"
    cmd = [
        KBAK,
        "ingest",
        "-b",
        kafka.bootstrap,
        "--topics",
        topic,
        "--lake",
        str(lake),
        "--once",
        "--flush-records",
        "200",
    ]
    for delay in (3.2, 3.9, 4.6):  # group join takes ~3 s; kill at different points of the run
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_json(*cmd[1:])
    assert archive_rows(str(lake), topic=topic) == consume_all(kafka.bootstrap, topic, 3)


def _wait_for_rows(lake, expected: int, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        try:
            count = DeltaTable(str(lake)).count()
        except Exception:
            count = 0
        if count >= expected:
            return count
        time.sleep(0.5)
    return count


def test_two_workers_split_partitions_through_a_rebalance(kafka, tmp_path, topic_name):
    topic = topic_name("workers")
    parts = 6
    create_topics(kafka.bootstrap, {topic: parts})
    produce(kafka.bootstrap, _records(topic, 1200, parts, "w0"))
    lake = tmp_path / "lake"

    def worker(name: str) -> subprocess.Popen:
        return subprocess.Popen(
            [KBAK, "ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--group-id",
             f"g-{topic}", "--backup-id", name, "--flush-seconds", "0.5", "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    a = worker("worker-a")
    assert _wait_for_rows(lake, 1) > 0
    b = worker("worker-b")  # joins: the group rebalances while A is committing
    stop_producing = threading.Event()
    produced = [1200]

    def keep_producing():
        batch = 0
        while not stop_producing.is_set():
            batch += 1
            produce(kafka.bootstrap, _records(topic, 60, parts, f"w{batch}"))
            produced[0] += 60
            time.sleep(0.2)

    producer = threading.Thread(target=keep_producing)
    producer.start()
    time.sleep(8)
    a.send_signal(signal.SIGTERM)  # leaves the group: B takes over A's partitions
    out_a, err_a = a.communicate(timeout=60)
    time.sleep(4)
    stop_producing.set()
    producer.join()
    assert _wait_for_rows(lake, produced[0]) == produced[0]
    b.send_signal(signal.SIGTERM)
    out_b, err_b = b.communicate(timeout=60)
    assert a.returncode == 0, err_a
    assert b.returncode == 0, err_b

    source = consume_all(kafka.bootstrap, topic, parts)
    assert len(source) == produced[0]
    assert archive_rows(str(lake), topic=topic) == source
    writers = {h.get("kbak.backup_id") for h in DeltaTable(str(lake)).history() if h.get("kbak.operation") == "ingest"}
    assert writers == {"worker-a", "worker-b"}


def test_concurrent_once_runs_leave_no_staged_bodies_behind(kafka, tmp_path, topic_name):
    """Issue 14.15: the loser of a commit race removes the manifest body it staged (no orphan warnings)."""
    topic = topic_name("race")
    create_topics(kafka.bootstrap, {topic: 3})
    produce(kafka.bootstrap, _records(topic, 3000, 3, "r"))
    lake = tmp_path / "lake"
    cmd = [KBAK, "ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--once", "--quiet",
           "--flush-records", "50"]  # fmt: skip
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in runs:
        _out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    assert archive_rows(str(lake), topic=topic) == consume_all(kafka.bootstrap, topic, 3)
    proc = run_kbak("validate", "--lake", str(lake))
    assert proc.returncode == 0, proc.stdout
    assert "orphan-staged-body" not in proc.stdout, proc.stdout
