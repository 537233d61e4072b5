"""``kbak retention`` and ``kbak vacuum`` through the CLI on lakes ingested from the real broker."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from support.custody_lakes import NOV_1_2024_MS, ingest, records
from support.kbak_testing import archive_rows, consume_all, produce, run_json, run_kbak

from pipeline.custody.manifest import manifest_path
from pipeline.dev.sample import create_topics


def _manifest(lake: Path, version: int) -> dict:
    return json.loads((lake / manifest_path(version)).read_text())["body"]


def test_retention_two_topics_old_and_new_days_with_a_held_case(kafka, tmp_path, topic_name):
    a, b = topic_name("ret-a"), topic_name("ret-b")
    create_topics(kafka.bootstrap, {a: 3, b: 3})
    # 60 records an hour apart from 2024-11-01 00:00 UTC: days Nov 1, 2 and 3 on each topic.
    produce(kafka.bootstrap, records(a, 60, NOV_1_2024_MS, 3_600_000) + records(b, 60, NOV_1_2024_MS, 3_600_000))
    lake = tmp_path / "lake"
    ingest(kafka, a, str(lake))
    ingest(kafka, b, str(lake))
    L = ("--lake", str(lake))

    # No policy yet: nothing to do, nothing changed.
    proc = run_kbak("retention", "apply", *L, "--now", "2024-12-01")
    assert proc.returncode == 0 and "nothing to do" in proc.stdout
    versions_before = len(list((lake / "_delta_log").glob("*.json")))

    run_json("retention", "set", *L, "--topics", a, "--days", "30", "--reason", "audit: 30 days")
    run_json("retention", "set", *L, "--topics", f"{a}|{b}", "--days", "10", "--reason", "default")
    nomatch = run_kbak("retention", "set", *L, "--topics", "nothing-.*", "--days", "5")
    assert nomatch.returncode == 0 and "matches no topic" in nomatch.stderr
    shown = run_json("retention", "show", *L)
    by_topic = {t["topic"]: t for t in shown["topics"]}
    assert by_topic[a]["days"] == 30 and "longest retention wins" in by_topic[a]["note"]
    assert by_topic[b]["days"] == 10 and by_topic[b]["policy"] == f"{a}|{b}"
    assert shown["unmatched_policies"] == ["nothing-.*"]
    assert len(list((lake / "_delta_log").glob("*.json"))) == versions_before + 3  # each change is a commit

    # A case holds topic b's Nov 2: that day stays whole.
    held = run_kbak("hold", *L, "--case", "CASE-7", "--topics", b, "--from", "2024-11-02T05:00:00Z",
                    "--to", "2024-11-02T06:00:00Z", "--reason", "litigation")  # fmt: skip
    assert held.returncode == 0, held.stderr

    # 2024-11-14: b (10 days) expires days before Nov 4, a (30 days) nothing.
    dry = run_json("retention", "apply", *L, "--now", "2024-11-14T12:00:00Z", "--dry-run")
    assert [(p["topic"], p["date"]) for p in dry["partitions_removed"]] == [(b, "2024-11-01"), (b, "2024-11-03")]
    assert dry["version"] is None
    out = run_json("retention", "apply", *L, "--now", "2024-11-14T12:00:00Z")
    assert [(p["topic"], p["date"]) for p in out["partitions_removed"]] == [(b, "2024-11-01"), (b, "2024-11-03")]
    assert [(k["topic"], k["date"], k["cases"]) for k in out["kept_for_cases"]] == [(b, "2024-11-02", ["CASE-7"])]

    source_a = consume_all(kafka.bootstrap, a, 3)
    source_b = consume_all(kafka.bootstrap, b, 3)
    kept_b = [r for r in source_b if 24 * 3_600_000 <= r.timestamp_ms - NOV_1_2024_MS < 48 * 3_600_000]
    assert archive_rows(str(lake), topic=a) == source_a
    assert archive_rows(str(lake), topic=b) == kept_b

    body = _manifest(lake, out["version"])
    assert body["operation"] == "retention"
    removed_rows = [r for r in source_b if r not in kept_b]
    assert sum(f["records"] for f in body["files_removed"]) == len(removed_rows)
    for f in body["files_removed"]:
        assert hashlib.sha256((lake / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    covered = {
        (r["partition"], o)
        for r in body["removed_offsets"]
        for o in range(r["first_offset"], r["last_offset"] + 1)
        if r["reason"] == "retention" and r["topic"] == b
    }
    assert covered == {(r.partition, r.offset) for r in removed_rows}
    assert sum(r["records"] for r in body["removed_offsets"]) == len(removed_rows)

    # Vacuum deletes the expired files at once, on the record; nothing else.
    vac = run_json("vacuum", *L)
    deleted = {f["path"] for f in vac["files_deleted"]}
    assert deleted == {f["path"] for f in body["files_removed"]}
    assert all(f["reason"] == "retention" for f in vac["files_deleted"])
    assert not any((lake / p).exists() for p in deleted)
    assert _manifest(lake, vac["version"])["files_deleted"] == vac["files_deleted"]
    assert run_json("vacuum", *L)["files_deleted"] == []
    assert archive_rows(str(lake), topic=a) == source_a
    assert archive_rows(str(lake), topic=b) == kept_b

    valid = run_kbak("validate", *L, "--deep", "--format", "json")
    assert valid.returncode == 0, valid.stdout
    assert json.loads(valid.stdout)["valid"]

    # Later, with the case released, the held day goes too.
    assert run_kbak("hold", *L, "--case", "CASE-7", "--release", "--reason", "closed").returncode == 0
    later = run_json("retention", "apply", *L, "--now", "2024-11-14T12:00:00Z")
    assert [(p["topic"], p["date"]) for p in later["partitions_removed"]] == [(b, "2024-11-02")]
    assert archive_rows(str(lake), topic=b) == []


def test_retention_bad_input_is_one_line_and_changes_nothing(two_run_lake, tmp_path):
    import shutil

    lake = tmp_path / "lake"
    shutil.copytree(two_run_lake.lake, lake)
    before = sorted(p.name for p in (lake / "_delta_log").glob("*.json"))
    for args, message in [
        (("--topics", "x", "--days", "0"), "positive number of days"),
        (("--topics", "x", "--days", "-3"), "positive number of days"),
        (("--topics", "(", "--days", "3"), "not a valid regular expression"),
    ]:
        proc = run_kbak("retention", "set", "--lake", str(lake), *args)
        assert proc.returncode == 1, proc
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    bad_now = run_kbak("retention", "apply", "--lake", str(lake), "--now", "yesterday")
    assert bad_now.returncode != 0 and bad_now.stderr.startswith("kbak: error:")
    assert sorted(p.name for p in (lake / "_delta_log").glob("*.json")) == before
    assert not (lake / "_kbak" / "retention").exists()


def test_continuous_ingest_applies_yaml_retention_and_compacts_closed_days(kafka, tmp_path, topic_name):
    import signal
    import subprocess
    import time

    from deltalake import DeltaTable
    from support.kbak_testing import KBAK

    a, b = topic_name("ing-ret"), topic_name("ing-keep")
    create_topics(kafka.bootstrap, {a: 2, b: 2})
    produce(kafka.bootstrap, records(a, 40, NOV_1_2024_MS, 3_600_000, partitions=2)
            + records(b, 40, NOV_1_2024_MS, 3_600_000, partitions=2))  # fmt: skip
    lake = tmp_path / "lake"
    config = tmp_path / "backup.yaml"
    config.write_text(
        f"mode: backup\nsource:\n  bootstrap_servers: [{kafka.bootstrap}]\n  topics:\n    include: ['{a}', '{b}']\n"
        f"storage:\n  backend: filesystem\n  path: {lake}\nretention:\n  - topics: '{a}'\n    days: 30\n"
        "    reason: non-compliance data\n"
    )
    # A first snapshot in small commits, then the continuous worker with its lifecycle side.
    run_json("ingest", "--config", str(config), "--once", "--flush-records", "10")
    assert run_json("retention", "show", "--lake", str(lake))["policies"][0]["reason"] == "non-compliance data"
    proc = subprocess.Popen(
        [KBAK, "ingest", "--config", str(config), "--continuous", "--compact", "--retention-apply",
         "--maintenance-seconds", "1", "--flush-seconds", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def files_by_topic() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for path in DeltaTable(str(lake)).get_add_actions(flatten=True).column("path").to_pylist():
            out.setdefault(path.split("/")[0].removeprefix("topic="), []).append(path)
        return out

    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            files = files_by_topic()
            if a not in files and len(files.get(b, [])) == 2:  # b: Nov 1 and Nov 2, one file each
                break
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert a not in files_by_topic() and len(files_by_topic()[b]) == 2, files_by_topic()
    assert archive_rows(str(lake), topic=b) == consume_all(kafka.bootstrap, b, 2)
    ops = [json.loads(p.read_text())["body"]["operation"] for p in sorted((lake / "_kbak" / "custody").glob("0*.json"))]
    assert "retention" in ops and "compact" in ops and ops.count("retention-policy") == 1
    valid = run_kbak("validate", "--lake", str(lake), "--deep", "--format", "json")
    assert valid.returncode == 0, valid.stdout


def test_compact_and_retention_apply_need_continuous_ingest(kafka, tmp_path, topic_name):
    topic = topic_name("ing-once")
    create_topics(kafka.bootstrap, {topic: 1})
    proc = run_kbak("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(tmp_path / "lake"), "--once",
                    "--compact")  # fmt: skip
    assert proc.returncode == 1 and "continuous" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "lake").exists()


def test_yaml_retention_is_not_written_when_kafka_cannot_be_read(tmp_path):
    """The lifecycle side asks Kafka first, like ingest: an unreachable source leaves no lake behind."""
    lake = tmp_path / "lake"
    config = tmp_path / "backup.yaml"
    config.write_text(
        "mode: backup\nsource:\n  bootstrap_servers: ['127.0.0.1:1']\n  topics:\n    include: ['a']\n"
        f"storage:\n  backend: filesystem\n  path: {lake}\nretention:\n  - topics: 'a'\n    days: 30\n"
    )
    proc = run_kbak("ingest", "--config", str(config), "--once", "--connect-timeout", "2")
    assert proc.returncode == 1 and proc.stderr.count("kbak: error:") == 1, proc.stderr
    assert not lake.exists()
