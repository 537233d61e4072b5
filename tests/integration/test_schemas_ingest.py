"""``kbak ingest --schema-registry`` when the registry misbehaves: nothing is archived without its
schema, unless ``--schema-registry-optional`` says so; unknown ids are archived and counted."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from deltalake import DeltaTable
from support.kbak_testing import one_line_error, run_kbak
from support.schema_registry import FixtureRegistry
from support.wire_records import payment, produce_payments

from pipeline.dev.sample import create_topics


def _records(lake: Path) -> int:
    return DeltaTable(str(lake)).to_pyarrow_table().num_rows if (lake / "_delta_log").exists() else 0


def _avro_topic(kafka, topic_name, registry: FixtureRegistry, n: int = 5) -> str:
    topic = topic_name("savro-bad")
    create_topics(kafka.bootstrap, {topic: 1})
    produce_payments(kafka.bootstrap, topic, "avro", registry.url, [payment(i) for i in range(n)])
    return topic


def _ingest(kafka, topic: str, lake: Path | str, *extra: str, env: dict | None = None):
    return run_kbak("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--once", *extra, env=env)


def test_registry_errors_stop_the_ingest_before_anything_is_archived(kafka, topic_name, tmp_path):
    with FixtureRegistry() as registry:
        topic = _avro_topic(kafka, topic_name, registry)
        registry.fail_with(500)
        lake = tmp_path / "lake"
        err = one_line_error(_ingest(kafka, topic, lake, "--schema-registry", registry.url))
        assert "schema registry" in err and "failed to return schema 1" in err and "HTTP status code 500" in err
        assert _records(lake) == 0
        assert not (lake / "_kbak" / "schemas").exists()
        # the registry back: a rerun archives everything, with the schema
        registry.fail_with(None)
        proc = _ingest(kafka, topic, lake, "--schema-registry", registry.url, "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["schemas"]["kept"] == [1]
        assert _records(lake) == 5


def test_a_stopped_registry_fails_clearly(kafka, topic_name, tmp_path):
    registry = FixtureRegistry().start()
    topic = _avro_topic(kafka, topic_name, registry)
    url = registry.url
    registry.stop()
    lake = tmp_path / "lake"
    err = one_line_error(_ingest(kafka, topic, lake, "--schema-registry", url))
    assert "Connection refused" in err or "connect" in err.lower()
    assert _records(lake) == 0


def test_optional_registry_archives_and_counts_what_it_could_not_keep(kafka, topic_name, tmp_path):
    with FixtureRegistry() as registry:
        topic = _avro_topic(kafka, topic_name, registry)
        registry.fail_with(503)
        lake = tmp_path / "lake"
        proc = _ingest(kafka, topic, lake, "--schema-registry", registry.url, "--schema-registry-optional", "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["schemas"] == {"kept": [], "unknown": {}, "unkept": {"1": 5}}
        assert _records(lake) == 5


def test_schema_registry_from_yaml_config(kafka, topic_name, tmp_path):
    with FixtureRegistry(first_id=40) as registry:
        topic = _avro_topic(kafka, topic_name, registry)
        lake = tmp_path / "lake"
        cfg = tmp_path / "backup.yaml"
        cfg.write_text(
            f"mode: backup\nsource:\n  bootstrap_servers: [{kafka.bootstrap}]\n  topics: {{include: [{topic}]}}\n"
            f"storage:\n  backend: filesystem\n  path: {lake}\nbackup:\n  continuous: false\n"
            f"schema_registry:\n  url: {registry.url}\n  basic_auth_user_info: auditor:secret\n"
        )
        proc = run_kbak("ingest", "--config", str(cfg), "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["schemas"]["kept"] == [40]
        assert (lake / "_kbak" / "schemas" / "40.json").exists()
        basic = "Basic " + base64.b64encode(b"auditor:secret").decode()
        assert basic in registry.state.authorization  # kbak's reads carried the configured credentials


def test_registry_options_without_url_are_refused(tmp_path):
    proc = run_kbak(
        "ingest", "-b", "127.0.0.1:1", "--topics", "x", "--lake", str(tmp_path / "l"), "--schema-registry-auth", "u:p"
    )
    assert "need --schema-registry URL" in one_line_error(proc)


def test_schemas_are_kept_and_used_on_an_s3_lake(kafka, s3, bucket, topic_name):
    """The same path on S3 (moto server): kept documents, listing, decoding, with the registry gone."""
    uri = f"s3://{bucket}/lake"
    env = s3.env()
    with FixtureRegistry(first_id=70) as registry:
        topic = _avro_topic(kafka, topic_name, registry)
        args = ("--s3-endpoint", s3.endpoint, "--schema-registry", registry.url, "--json")
        proc = _ingest(kafka, topic, uri, *args, env=env)
        assert proc.returncode == 0, proc.stderr
    listed = json.loads(run_kbak("schemas", "--lake", uri, "--s3-endpoint", s3.endpoint, "--json", env=env).stdout)
    assert [(r["id"], r["type"], r["records"]) for r in listed] == [(70, "AVRO", 5)]
    rows = json.loads(
        run_kbak(
            "query",
            "--lake",
            uri,
            "--s3-endpoint",
            s3.endpoint,
            "--format",
            "json",
            "--sql",
            "SELECT field(value, 'customer_id') AS c FROM records ORDER BY \"offset\"",
            env=env,
            check=True,
        ).stdout
    )
    assert [r["c"] for r in rows] == [payment(i)["customer_id"] for i in range(5)]


def test_wire_format_keys_are_kept_and_matched(kafka, topic_name, tmp_path):
    """Keys serialized with the registry (an Avro string key) keep their schema too, and
    customer_activity matches the customer by key with the registry gone."""
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    topic = topic_name("savro-keys")
    create_topics(kafka.bootstrap, {topic: 1})
    lake = tmp_path / "lake"
    with FixtureRegistry(first_id=80) as registry:
        key_ser = AvroSerializer(SchemaRegistryClient({"url": registry.url}), '"string"')
        ctx = SerializationContext(topic, MessageField.KEY)
        p = Producer({"bootstrap.servers": kafka.bootstrap})
        for i, who in enumerate(["customer-0042", "customer-0007", "customer-0042"]):
            p.produce(topic, key=key_ser(who, ctx), value=b'{"n": %d}' % i, timestamp=1_719_792_000_000 + i)
        p.flush(30)
        proc = _ingest(kafka, topic, lake, "--schema-registry", registry.url, "--json")
        assert json.loads(proc.stdout)["schemas"]["kept"] == [80]
    rows = json.loads(
        run_kbak(
            "query", "customer_activity", "--lake", str(lake), "--decode", "--param", "customer=customer-0042",
            "--param", "start=2024-07-01", "--param", "end=2024-07-02", "--format", "json", check=True,
        ).stdout
    )  # fmt: skip
    assert [(r["offset"], r["key"]) for r in rows] == [(0, '"customer-0042"'), (2, '"customer-0042"')]
