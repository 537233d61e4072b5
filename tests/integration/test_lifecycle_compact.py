"""``kbak compact`` and ``kbak vacuum`` through the CLI: records, exactly-once state and custody survive."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from deltalake import DeltaTable
from support.custody_lakes import NOV_1_2024_MS, count_records, ingest, records
from support.kbak_testing import KBAK, archive_rows, consume_all, produce, run_json, run_kbak, table_rows, wait_until

from pipeline.custody.manifest import checkpoint_path, manifest_path
from pipeline.dev.sample import create_topics

MIB = str(1 << 20)


def _txn_versions(lake: Path) -> dict[str, int]:
    """Every application transaction's latest version, read from the Delta log's JSON entries."""
    out: dict[str, int] = {}
    for entry in sorted((lake / "_delta_log").glob("0*.json")):
        for line in entry.read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            if "txn" in action:
                out[action["txn"]["appId"]] = action["txn"]["version"]
    return out


def _body(lake: Path, version: int) -> dict:
    return json.loads((lake / manifest_path(version)).read_text())["body"]


def _validate(lake: Path) -> dict:
    proc = run_kbak("validate", "--lake", str(lake), "--deep", "--format", "json")
    return json.loads(proc.stdout) | {"exit": proc.returncode}


def test_compaction_keeps_records_transactions_and_custody_then_vacuum(kafka, tmp_path, topic_name):
    topic = topic_name("compact")
    create_topics(kafka.bootstrap, {topic: 3})
    # 300 records 10 minutes apart: days Nov 1, 2 and 3; 30-record commits make many small files.
    produce(kafka.bootstrap, records(topic, 300, NOV_1_2024_MS, 600_000))
    lake = tmp_path / "lake"
    ingest(kafka, topic, str(lake), "--flush-records", "30")
    L = ("--lake", str(lake))
    source = consume_all(kafka.bootstrap, topic, 3)
    dt = DeltaTable(str(lake))
    files_before, version_before = len(dt.file_uris()), dt.version()
    txns = _txn_versions(lake)
    assert len(txns) == 3 and files_before >= 10

    assert run_kbak("compact", *L, "--target-file-size", "1000").returncode == 1  # below 1 MiB
    dry = run_json("compact", *L, "--target-file-size", MIB, "--dry-run")
    assert {g["date"] for g in dry["groups"]} == {"2024-11-01", "2024-11-02", "2024-11-03"}
    assert DeltaTable(str(lake)).version() == version_before

    out = run_json("compact", *L, "--target-file-size", MIB)
    assert [g["files_added"] for g in out["groups"]] == [1, 1, 1]
    assert sum(g["records"] for g in out["groups"]) == len(source)
    dt = DeltaTable(str(lake))
    assert len(dt.file_uris()) == 3
    assert archive_rows(str(lake), topic=topic) == source
    # Ingest's exactly-once state is untouched (read back through a fresh table, checkpoints included).
    assert {app: dt.transaction_version(app) for app in txns} == txns
    assert list((lake / "_delta_log").glob("*.checkpoint.parquet"))
    # The last compaction commit has a checkpoint (readers skip replaying the removed files), in its manifest.
    last = out["groups"][-1]["version"]
    assert (lake / checkpoint_path(last)).exists()
    assert json.loads((lake / manifest_path(last)).read_text())["checkpoint_sha256"]
    assert ingest(kafka, topic, str(lake))["records"] == 0

    # The manifest: files removed with the SHA-256 ingest recorded, files added, equal content digest.
    ingested = {f["path"]: f["sha256"] for v in range(1, version_before + 1) for f in _body(lake, v)["files_added"]}
    for g in out["groups"]:
        body = _body(lake, g["version"])
        assert body["operation"] == "compact" and body["content_digest"]["records"] == g["records"]
        assert all(ingested[f["path"]] == f["sha256"] for f in body["files_removed"])
        assert len(body["files_added"]) == 1
    report = _validate(lake)
    assert report["exit"] == 0 and report["valid"], report["errors"]

    # Time travel before compaction still reads the same records (the removed files are kept).
    assert count_records(lake, as_of=version_before) == len(source) == count_records(lake)

    # Vacuum now: the compacted originals are inside the 7-year removed-file retention, nothing goes.
    now = run_json("vacuum", *L)
    assert now["files_deleted"] == [] and now["removed_file_retention_days"] == 2557
    # Nor a month on, past Delta's week of tombstones in checkpoints: kbak's own retention decides.
    month_on = (datetime.now(UTC) + timedelta(days=31)).isoformat()
    assert run_json("vacuum", *L, "--now", month_on)["files_deleted"] == []
    # Seven years on, they go, on the record; the current version and validation are unaffected.
    vac = run_json("vacuum", *L, "--now", "2034-01-01T00:00:00Z")
    removed = {f["path"] for g in out["groups"] for f in _body(lake, g["version"])["files_removed"]}
    assert {f["path"] for f in vac["files_deleted"]} == removed
    assert {f["reason"] for f in vac["files_deleted"]} == {"compact"}
    assert not any((lake / p).exists() for p in removed)
    assert archive_rows(str(lake), topic=topic) == source
    assert count_records(lake, as_of=vac["version"] - 1) == len(source)
    report = _validate(lake)
    assert report["exit"] == 0 and report["valid"], report["errors"]


def test_validate_deep_names_changed_or_vanished_compacted_files(kafka, tmp_path, topic_name):
    topic = topic_name("compact-tamper")
    create_topics(kafka.bootstrap, {topic: 2})
    produce(kafka.bootstrap, records(topic, 80, NOV_1_2024_MS, 60_000, partitions=2))
    lake = tmp_path / "lake"
    ingest(kafka, topic, str(lake), "--flush-records", "20")
    out = run_json("compact", "--lake", str(lake), "--target-file-size", MIB)
    body = _body(lake, out["groups"][0]["version"])
    first, second = (lake / f["path"] for f in body["files_removed"][:2])
    shutil.copyfile(second, first)  # a historical file now holds other (valid, duplicated) records
    report = _validate(lake)
    assert report["exit"] != 0
    assert {e["check"] for e in report["errors"]} == {"content-digest"}
    second.unlink()  # a historical file deleted behind kbak's back (not by a recorded vacuum)
    report = _validate(lake)
    assert report["exit"] != 0
    assert [(e["check"], e["subject"]) for e in report["errors"]] == [
        ("removed-file-gone", body["files_removed"][1]["path"])
    ]


def test_compaction_while_ingest_runs_and_is_killed_and_restarted(kafka, tmp_path, topic_name):
    topic = topic_name("compact-live")
    create_topics(kafka.bootstrap, {topic: 3})
    lake = tmp_path / "lake"
    cmd = [KBAK, "ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--flush-records", "20",
           "--flush-seconds", "0.3"]  # fmt: skip
    produce(kafka.bootstrap, records(topic, 200, NOV_1_2024_MS, 600_000, tag="a"))
    worker = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    compactions = []
    try:
        wait_until(lambda: table_rows(lake) >= 100)
        for batch, tag in enumerate("bcd"):
            produce(kafka.bootstrap, records(topic, 150, NOV_1_2024_MS + batch * 3_600_000, 600_000, tag=tag))
            out = run_json("compact", "--lake", str(lake), "--target-file-size", MIB)  # while ingest commits
            compactions += [g["version"] for g in out["groups"]]
            if batch == 1:  # kill the worker mid-stream and start another
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                worker = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: table_rows(lake) >= 650)
        time.sleep(2)  # anything still in flight lands (and would show as a duplicate)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    assert compactions
    assert archive_rows(str(lake), topic=topic) == consume_all(kafka.bootstrap, topic, 3)
    out = run_json("compact", "--lake", str(lake), "--target-file-size", MIB)
    assert archive_rows(str(lake), topic=topic) == consume_all(kafka.bootstrap, topic, 3)
    assert all(len(ds) == 1 for ds in _files_by_day(lake).values()) and out["groups"]
    report = _validate(lake)
    assert report["exit"] == 0 and report["valid"], report["errors"]


def _files_by_day(lake: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in DeltaTable(str(lake)).get_add_actions(flatten=True).column("path").to_pylist():
        out.setdefault(path.split("/")[1], []).append(path)
    return out
