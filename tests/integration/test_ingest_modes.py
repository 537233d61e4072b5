"""Ingest options and modes: YAML config, continuous runs, new topics, metrics, transactions, gaps."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request

from confluent_kafka import Producer
from deltalake import DeltaTable
from support.kbak_testing import KBAK, archive_rows, consume_all, produce, run_json, skip_on_tansu

from pipeline.core.metrics import IngestMetrics
from pipeline.core.storage import Lake
from pipeline.dev.sample import create_topics
from pipeline.dev.servers import free_port
from pipeline.ingest import IngestOptions, ingest


def test_yaml_config_in_oso_shape_with_env_expansion_and_flag_override(kafka, tmp_path, topic_name, monkeypatch):
    keep, skip = topic_name("cfg-keep"), topic_name("cfg-skip")
    create_topics(kafka.bootstrap, {keep: 2, skip: 1})
    produce(kafka.bootstrap, [{"topic": t, "value": b"x"} for t in (keep, skip) for _ in range(5)])
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(
        f"""
mode: backup
backup_id: nightly-audit
source:
  bootstrap_servers: ["${{KBAK_TEST_BOOTSTRAP_FOR_CFG}}"]
  topics:
    include: ["cfg-.*"]
    exclude: ["{skip}"]
storage:
  backend: filesystem
  path: {tmp_path / "from-file"}
backup:
  compression: zstd
  compression_level: 9
  source_cluster_id: prod-east
  continuous: false
"""
    )
    lake = tmp_path / "from-flag"
    env = {"KBAK_TEST_BOOTSTRAP_FOR_CFG": kafka.bootstrap}
    summary = run_json("ingest", "--config", str(cfg), "--lake", str(lake), env=env)

    assert summary["backup_id"] == "nightly-audit"
    assert summary["source_cluster"] == "prod-east"
    assert keep in summary["topics"] and skip not in summary["topics"]
    assert not (tmp_path / "from-file").exists()  # --lake overrode storage.path
    rows = DeltaTable(str(lake)).to_pyarrow_table()
    assert set(rows["source_cluster"].to_pylist()) == {"prod-east"}
    assert skip not in set(rows["topic"].to_pylist())
    files = list(lake.rglob("*.parquet"))
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(files[0]).metadata.row_group(0).column(0)
    assert meta.compression == "ZSTD"


def test_ingest_to_s3_lake(kafka, s3, bucket, topic_name):
    topic = topic_name("s3ok")
    create_topics(kafka.bootstrap, {topic: 3})
    produce(
        kafka.bootstrap, [{"topic": topic, "partition": i % 3, "key": b"k%d" % i, "value": b"v"} for i in range(90)]
    )
    uri = f"s3://{bucket}/archive/kafka"
    summary = run_json(
        "ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", uri, "--s3-endpoint", s3.endpoint, "--once",
        env=s3.env(),
    )  # fmt: skip
    assert summary["records"] == 90
    opts = {"AWS_ENDPOINT_URL": s3.endpoint, "AWS_ALLOW_HTTP": "true", **s3.env()}
    assert archive_rows(uri, opts, topic) == consume_all(kafka.bootstrap, topic, 3)
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket, Prefix="archive/kafka/")["Contents"]]
    assert any(k.startswith(f"archive/kafka/topic={topic}/date=") and k.endswith(".zstd.parquet") for k in keys)


def test_continuous_run_picks_up_new_topics_serves_metrics_and_stops_cleanly_on_sigterm(kafka, tmp_path, topic_name):
    prefix = topic_name("live")
    first, second = f"{prefix}-a", f"{prefix}-b"
    create_topics(kafka.bootstrap, {first: 2})
    produce(kafka.bootstrap, [{"topic": first, "value": b"a%d" % i} for i in range(20)])
    lake = tmp_path / "lake"
    port = free_port()
    proc = subprocess.Popen(
        [KBAK, "ingest", "-b", kafka.bootstrap, "--topics", f"{prefix}-.*", "--lake", str(lake), "--flush-seconds",
         "0.5", "--topic-refresh-seconds", "1", "--metrics-port", str(port), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait(lambda: _count(lake) >= 20)
        create_topics(kafka.bootstrap, {second: 1})
        produce(kafka.bootstrap, [{"topic": second, "value": b"b%d" % i} for i in range(7)])
        _wait(lambda: _count(lake) >= 27)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["records"] == 27 and second in summary["topics"]
    assert archive_rows(str(lake), topic=second) == consume_all(kafka.bootstrap, second, 1)
    assert f'kbak_records_archived_total{{topic="{first}"}} 20.0' in metrics
    assert "kbak_commits_total" in metrics and "kbak_last_commit_timestamp_seconds" in metrics
    assert f'kbak_partition_lag{{partition="0",topic="{first}"}} 0.0' in metrics
    assert "kafka_backup_backup_size_bytes" in metrics


def test_run_outcome_metrics(kafka, tmp_path, topic_name):
    topic = topic_name("outcome")
    create_topics(kafka.bootstrap, {topic: 1})
    produce(kafka.bootstrap, [{"topic": topic, "value": b"x"}])
    metrics = IngestMetrics()
    ingest(IngestOptions(kafka.bootstrap, Lake.at(tmp_path / "lake"), [topic], once=True), metrics=metrics)
    get = metrics.registry.get_sample_value
    assert get("kafka_backup_backups_total", {"outcome": "success"}) == 1
    assert get("kafka_backup_backup_size_bytes") > 0
    assert get("kbak_records_archived_total", {"topic": topic}) == 1


def test_aborted_transactions_are_not_archived(kafka, tmp_path, topic_name):
    skip_on_tansu(kafka, "read_committed does not filter aborted transactions on its memory engine")
    topic = topic_name("txn")
    create_topics(kafka.bootstrap, {topic: 1})
    p = Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": f"tx-{topic}"})
    p.init_transactions()
    p.begin_transaction()
    p.produce(topic, b"committed")
    p.commit_transaction()
    p.begin_transaction()
    p.produce(topic, b"aborted")
    p.abort_transaction()
    run_json("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(tmp_path / "lake"), "--once")
    values = [r.value for r in archive_rows(str(tmp_path / "lake"), topic=topic)]
    assert values == [b"committed"]


def test_records_deleted_by_retention_are_a_recorded_gap(kafka, tmp_path, topic_name):
    skip_on_tansu(kafka, "DeleteRecords is unsupported")
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    topic = topic_name("gap")
    create_topics(kafka.bootstrap, {topic: 1})
    produce(kafka.bootstrap, [{"topic": topic, "value": b"%d" % i} for i in range(10)])
    AdminClient({"bootstrap.servers": kafka.bootstrap}).delete_records([TopicPartition(topic, 0, 4)])[
        TopicPartition(topic, 0, 4)
    ].result(30)
    summary = run_json("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(tmp_path / "lake"), "--once")
    assert summary["gaps"] == [
        {"topic": topic, "partition": 0, "first_missing": 0, "last_missing": 3, "reason": "deleted_before_archive"}
    ]
    assert [r.offset for r in archive_rows(str(tmp_path / "lake"), topic=topic)] == list(range(4, 10))


def _count(lake) -> int:
    try:
        return DeltaTable(str(lake)).count()
    except Exception:
        return 0


def _wait(cond, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def test_log_append_time_topics_are_marked(kafka, tmp_path, topic_name):
    skip_on_tansu(kafka, "LogAppendTime topics keep CreateTime")
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = topic_name("lat")
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"message.timestamp.type": "LogAppendTime"})])[topic].result(30)
    produce(kafka.bootstrap, [{"topic": topic, "value": b"x", "timestamp": 1_000}])
    run_json("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(tmp_path / "lake"), "--once")
    row = DeltaTable(str(tmp_path / "lake")).to_pyarrow_table().to_pylist()[0]
    assert row["timestamp_type"] == "log_append" and row["timestamp"].year > 2000


def _metric(port: int, name: str) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_continuous_worker_without_partitions_warns_and_says_so(kafka, tmp_path, topic_name):
    """Issue 14.7: a worker the group gives nothing showed '0 records/s' and exited 0 without a word."""
    topic = topic_name("idle")
    group = f"g-{topic}"
    create_topics(kafka.bootstrap, {topic: 1})  # one partition, two workers: one of them gets none
    produce(kafka.bootstrap, [{"topic": topic, "value": b"x%d" % i} for i in range(10)])
    lake = tmp_path / "lake"
    ports = [free_port(), free_port()]
    common = ("--topics", topic, "--lake", str(lake), "--group-id", group, "--flush-seconds", "0.5")
    workers = [
        subprocess.Popen(
            [
                KBAK,
                "ingest",
                "-b",
                kafka.bootstrap,
                *common,
                "--metrics-port",
                str(port),
                "--json",
                "--unassigned-warning-seconds",
                "3",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for port in ports
    ]
    try:
        _wait(lambda: _count(lake) >= 10)
        # Settled: one worker holds the partition, the other holds nothing.
        _wait(lambda: sorted(_metric(p, "kbak_assigned_partitions") or 0 for p in ports) == [0, 1], timeout=90)
        idle = next(i for i, p in enumerate(ports) if _metric(p, "kbak_assigned_partitions") == 0)
        time.sleep(5)  # longer than --unassigned-warning-seconds
        assert _metric(ports[idle], "kbak_assigned_partitions") == 0
        assert (_metric(ports[idle], 'kbak_errors_total{kind="unassigned"}') or 0) >= 1
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        results = [w.communicate(timeout=60) for w in workers]
    out, err = results[idle]
    assert workers[idle].returncode == 0, err
    assert "kbak: warning: no partition assigned to this worker for" in err and group in err
    assert any(group in w and "no partition" in w for w in json.loads(out)["warnings"])
