"""Bad input gets a one-line error and a non-zero exit, and loses nothing (real broker, real S3)."""

from __future__ import annotations

import socket
import time

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from support.kbak_testing import archive_rows, consume_all, one_line_error, produce, run_json, run_kbak
from support.s3_fault_proxy import FaultProxy

from pipeline.dev.sample import create_topics
from pipeline.dev.servers import free_port


def test_unreachable_broker_fails_fast_and_writes_nothing(tmp_path):
    lake = tmp_path / "lake"
    started = time.monotonic()
    proc = run_kbak("ingest", "-b", f"127.0.0.1:{free_port()}", "--topics", ".*", "--lake", str(lake), "--once")
    assert "cannot reach Kafka" in one_line_error(proc)
    assert time.monotonic() - started < 30
    assert not lake.exists()


def test_patterns_matching_no_topic(kafka, tmp_path):
    proc = run_kbak("ingest", "-b", kafka.bootstrap, "--topics", "no-such-topic-.*", "--lake", str(tmp_path / "l"))
    assert "no topic" in one_line_error(proc) and "no-such-topic-.*" in proc.stderr
    assert not (tmp_path / "l").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_client_setting_librdkafka_rejects_is_one_line_before_the_lake_exists(kafka, tmp_path, topic_name, workers):
    """Issue 14.11: librdkafka checks settings in combination only when a client is made (by each worker)."""
    topic = topic_name("badx")
    create_topics(kafka.bootstrap, {topic: 2})
    lake = tmp_path / "lake"
    bad = ("-X", "fetch.max.bytes=3000", "--workers", workers)
    proc = run_kbak("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), *bad)
    assert "fetch.max.bytes" in one_line_error(proc)
    assert not lake.exists()


@pytest.mark.parametrize("size", ["0", "4", "1048575"])
def test_target_file_size_below_the_minimum_is_one_line(tmp_path, size):
    """Issue 14.10: values 1-4 crashed the writer; anything under 1 MiB is refused before any work."""
    lake = tmp_path / "lake"
    proc = run_kbak("ingest", "-b", "127.0.0.1:1", "--topics", "a", "--lake", str(lake), "--target-file-size", size)
    assert "--target-file-size" in one_line_error(proc) and proc.returncode == 2
    assert not lake.exists()


def test_invalid_regex(kafka, tmp_path):
    proc = run_kbak("ingest", "-b", kafka.bootstrap, "--topics", "orders(", "--lake", str(tmp_path / "l"))
    assert "not a valid regular expression" in one_line_error(proc)


def test_unknown_config_key_is_named(tmp_path):
    cfg = tmp_path / "backup.yaml"
    cfg.write_text("mode: backup\nsource:\n  bootstrap_servers: [x:1]\n  topicz: {include: [a]}\n")
    proc = run_kbak("ingest", "--config", str(cfg))
    assert "unknown key 'source.topicz'" in one_line_error(proc)


def test_bad_config_value_is_named(tmp_path):
    cfg = tmp_path / "backup.yaml"
    cfg.write_text("backup:\n  compression_level: 99\n")
    proc = run_kbak("ingest", "--config", str(cfg))
    assert "'backup.compression_level'" in one_line_error(proc)


def test_unset_environment_variable_in_config(tmp_path):
    cfg = tmp_path / "backup.yaml"
    cfg.write_text("source:\n  bootstrap_servers: ['${KBAK_TEST_SURELY_UNSET}']\n")
    proc = run_kbak("ingest", "--config", str(cfg))
    assert "KBAK_TEST_SURELY_UNSET is not set" in one_line_error(proc)


def test_bad_flag_value_exits_as_usage_error(tmp_path):
    proc = run_kbak("ingest", "-b", "x:1", "--topics", "a", "--lake", str(tmp_path), "--compression-level", "99")
    assert proc.returncode == 2


@pytest.mark.parametrize("port_kind", ["taken", "out_of_range"])
def test_metrics_port_taken_or_out_of_range_is_one_line(kafka, tmp_path, topic_name, port_kind):
    """A --metrics-port another process holds (or no port at all) was a traceback."""
    topic = topic_name("metricsport")
    create_topics(kafka.bootstrap, {topic: 1})
    holder = socket.socket()
    holder.bind(("0.0.0.0", 0))
    holder.listen()
    port = str(holder.getsockname()[1]) if port_kind == "taken" else "99999"
    lake = tmp_path / "lake"
    with holder:
        proc = run_kbak(
            "ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--once", "--metrics-port", port
        )
    assert one_line_error(proc).startswith(f"kbak: error: --metrics-port {port}")
    assert proc.returncode == (1 if port_kind == "taken" else 2)
    assert not lake.exists()


def test_unwritable_lake(kafka, tmp_path, topic_name):
    topic = topic_name("unwritable")
    create_topics(kafka.bootstrap, {topic: 1})
    produce(kafka.bootstrap, [{"topic": topic, "value": b"x"}])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = run_kbak("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(blocker / "lake"), "--once")
    assert "cannot write to lake" in one_line_error(proc)


def test_existing_table_that_is_not_kbaks(kafka, tmp_path, topic_name):
    topic = topic_name("foreign")
    create_topics(kafka.bootstrap, {topic: 1})
    lake = tmp_path / "lake"
    write_deltalake(str(lake), pa.table({"id": [1, 2], "name": ["a", "b"]}))
    proc = run_kbak("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--once")
    assert "not a kbak archive" in one_line_error(proc)
    assert DeltaTable(str(lake)).version() == 0  # untouched


def test_s3_failure_during_commit_is_retried_then_reported_and_table_stays_consistent(kafka, s3, bucket, topic_name):
    topic = topic_name("s3fail")
    create_topics(kafka.bootstrap, {topic: 2})
    produce(kafka.bootstrap, [{"topic": topic, "partition": i % 2, "value": b"v%d" % i} for i in range(50)])
    uri = f"s3://{bucket}/lake"
    opts = {"AWS_ENDPOINT_URL": s3.endpoint, "AWS_ALLOW_HTTP": "true", **s3.env()}
    with FaultProxy(s3.endpoint) as proxy:
        args = ("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", uri, "--s3-endpoint", proxy.endpoint)
        run_json(*args, "--once", env=s3.env())
        version = DeltaTable(uri, storage_options=opts).version()
        produce(kafka.bootstrap, [{"topic": topic, "partition": i % 2, "value": b"w%d" % i} for i in range(30)])

        proxy.fail_when = lambda method, path: method == "PUT" and "/_delta_log/" in path
        proc = run_kbak(*args, "--once", env=s3.env())
        assert "storage error committing" in one_line_error(proc)
        assert proxy.failed > 1  # retried
        assert DeltaTable(uri, storage_options=opts).version() == version  # nothing half-committed
        assert len(archive_rows(uri, opts, topic)) == 50

        proxy.heal()
        assert run_json(*args, "--once", env=s3.env())["records"] == 30
    assert archive_rows(uri, opts, topic) == consume_all(kafka.bootstrap, topic, 2)
