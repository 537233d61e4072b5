"""``kbak ingest --workers N``: N processes in one consumer group, one summary, one metrics endpoint."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import urllib.request

from deltalake import DeltaTable
from support.kbak_testing import KBAK, archive_rows, consume_all, produce, run_json, run_kbak, table_rows, wait_until

from pipeline.dev.sample import create_topics
from pipeline.dev.servers import free_port


def test_workers_snapshot_archives_every_record_once(kafka, tmp_path, topic_name):
    topic = topic_name("workers-once")
    create_topics(kafka.bootstrap, {topic: 4})
    produce(kafka.bootstrap, [{"topic": topic, "partition": i % 4, "value": b"v%d" % i} for i in range(400)])
    lake = tmp_path / "lake"
    summary = run_json(
        "ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--once", "--workers", "2",
        "--flush-records", "50",
    )  # fmt: skip
    assert summary["records"] == 400
    assert sorted(int(p) for p in summary["partitions"][topic]) == [0, 1, 2, 3]
    assert sum(p["records"] for p in summary["partitions"][topic].values()) == 400
    assert archive_rows(str(lake), topic=topic) == consume_all(kafka.bootstrap, topic, 4)  # each record once
    history = DeltaTable(str(lake)).history()
    ids = {h.get("kbak.backup_id") for h in history if h.get("kbak.operation") == "ingest"}
    assert ids == {summary["backup_id"]}  # one run, whichever worker committed


def test_workers_stop_cleanly_on_sigterm_and_sum_their_metrics(kafka, tmp_path, topic_name):
    topic = topic_name("workers-live")
    create_topics(kafka.bootstrap, {topic: 4})
    produce(kafka.bootstrap, [{"topic": topic, "partition": i % 4, "value": b"a%d" % i} for i in range(80)])
    lake = tmp_path / "lake"
    port = free_port()
    proc = subprocess.Popen(
        [KBAK, "ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--workers", "2",
         "--flush-seconds", "0.5", "--metrics-port", str(port), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: table_rows(lake) >= 80, 90, "80 records archived")
        metrics = ""

        def summed() -> bool:
            nonlocal metrics
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            return f'kbak_records_archived_total{{topic="{topic}"}} 80.0' in metrics

        wait_until(summed, 30, "metrics summed over the workers")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["records"] == 80
    assert archive_rows(str(lake), topic=topic) == consume_all(kafka.bootstrap, topic, 4)
    assert re.search(r"kbak_commits_total \d", metrics)


def test_workers_value_must_be_a_count_or_auto(kafka, tmp_path, topic_name):
    for bad in ("0", "many"):
        proc = run_kbak(
            "ingest", "-b", kafka.bootstrap, "--topics", "x", "--lake", str(tmp_path / "l"), "--workers", bad
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("kbak: error: --workers") and len(proc.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "l").exists()
