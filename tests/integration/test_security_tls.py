"""Kafka over TLS (and mTLS) through a real TLS terminator (stunnel) in front of Tansu; failing fast.

Every case runs the CLI: the right CA works for ingest (with group snapshots) and replay; a wrong CA,
a hostname mismatch and a missing client certificate each fail with one line naming the cause and
the broker, within the connect timeout, before anything is written to the lake.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition
from support.kbak_testing import consume_all, one_line_error, produce, run_json, run_kbak
from support.tls import STUNNEL_MISSING, TlsBroker, TlsKafka, other_ca, stunnel_binary

from pipeline.dev.sample import create_topics

pytestmark = pytest.mark.skipif(stunnel_binary() is None, reason=STUNNEL_MISSING)


@pytest.fixture(scope="module")
def tls_kafka(tmp_path_factory):
    with TlsBroker(tmp_path_factory.mktemp("tls")) as tk:
        yield tk


@pytest.fixture(scope="module")
def mtls_kafka(tmp_path_factory):
    with TlsBroker(tmp_path_factory.mktemp("mtls"), mtls=True) as tk:
        yield tk


def _x(settings: dict[str, str]) -> list[str]:
    return [a for k, v in settings.items() for a in ("-X", f"{k}={v}")]


def _yaml(path: Path, **doc) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def _records(topic: str, n: int) -> list[dict]:
    return [{"topic": topic, "partition": i % 2, "key": b"k%d" % i, "value": b"tls-%d" % i} for i in range(n)]


def test_right_ca_ingest_and_replay_over_tls(tls_kafka: TlsKafka, tmp_path: Path, topic_name):
    src, dst = topic_name("tls-src"), topic_name("tls-dst")
    create_topics(tls_kafka.bootstrap, {src: 2, dst: 2}, tls_kafka.settings())
    produce(tls_kafka.bootstrap, _records(src, 30), **tls_kafka.settings())
    group = topic_name("tls-app")
    app = Consumer({"bootstrap.servers": tls_kafka.bootstrap, "group.id": group, **tls_kafka.settings()})
    app.commit(offsets=[TopicPartition(src, 0, 4), TopicPartition(src, 1, 7)], asynchronous=False)
    app.close()
    lake = tmp_path / "lake"

    out = run_json(
        "ingest",
        "-b",
        tls_kafka.bootstrap,
        "--topics",
        src,
        "--lake",
        str(lake),
        "--once",
        "--snapshot-groups",
        *_x(tls_kafka.settings()),
    )
    assert out["records"] == 30

    # The replay's target cluster has its own security block (the docs' YAML shape).
    cfg = _yaml(
        tmp_path / "restore.yaml",
        mode="restore",
        target={
            "bootstrap_servers": [tls_kafka.bootstrap],
            "security": {"security_protocol": "SSL", "ssl_ca_location": str(tls_kafka.ca)},
        },
        restore={"topic_mapping": {src: dst}, "consumer_groups": [group]},
    )
    summary = run_json("replay", "--config", str(cfg), "--lake", str(lake))
    assert summary["records"] == 30
    # The group snapshot was taken, and the group restored, over TLS too.
    restored = {(c["source_partition"], c["source_offset"]) for c in summary["groups"][group]["committed"]}
    assert restored == {(0, 4), (1, 7)}
    got = consume_all(tls_kafka.bootstrap, dst, 2, **tls_kafka.settings())
    assert sorted(r.value for r in got) == sorted(r["value"] for r in _records(src, 30))


def test_mtls_with_client_certificate_from_yaml(mtls_kafka: TlsKafka, tmp_path: Path, topic_name):
    src = topic_name("mtls")
    create_topics(mtls_kafka.bootstrap, {src: 2}, mtls_kafka.settings())
    produce(mtls_kafka.bootstrap, _records(src, 10), **mtls_kafka.settings())
    security = {
        "security_protocol": "SSL",
        "ssl_ca_location": str(mtls_kafka.ca),
        "ssl_certificate_location": str(mtls_kafka.client_cert),
        "ssl_key_location": str(mtls_kafka.client_key),
    }
    cfg = _yaml(
        tmp_path / "backup.yaml",
        mode="backup",
        source={"bootstrap_servers": [mtls_kafka.bootstrap], "topics": {"include": [src]}, "security": security},
        storage={"backend": "filesystem", "path": str(tmp_path / "lake")},
    )
    assert run_json("ingest", "--config", str(cfg), "--once")["records"] == 10


def _fails_fast(args: list[str], lake: Path, expect: list[str]) -> str:
    started = time.monotonic()
    proc = run_kbak(*args, "--lake", str(lake), "--connect-timeout", "20")
    elapsed = time.monotonic() - started
    line = one_line_error(proc)
    for text in expect:
        assert text in line, line
    # The cause is seen on the first handshake, long before the connect timeout ends.
    assert elapsed < 15, f"took {elapsed:.1f}s: {line}"
    assert not lake.exists(), "nothing may be written to the lake before Kafka answers"
    return line


def test_wrong_ca_fails_fast(tls_kafka: TlsKafka, tmp_path: Path):
    settings = tls_kafka.settings(**{"ssl.ca.location": str(other_ca(tmp_path))})
    _fails_fast(
        ["ingest", "-b", tls_kafka.bootstrap, "--topics", ".*", "--once", *_x(settings)],
        tmp_path / "lake",
        ["TLS handshake with Kafka broker", tls_kafka.bootstrap, "certificate verify failed"],
    )


def test_hostname_mismatch_fails_fast(tls_kafka: TlsKafka, tmp_path: Path):
    # The certificate names localhost only; 127.0.0.1 is the same socket under another name.
    wrong_name = tls_kafka.bootstrap.replace("localhost", "127.0.0.1")
    _fails_fast(
        ["ingest", "-b", wrong_name, "--topics", ".*", "--once", *_x(tls_kafka.settings())],
        tmp_path / "lake",
        ["TLS handshake with Kafka broker", wrong_name, "certificate names 127.0.0.1"],
    )


def test_missing_client_certificate_fails_fast(mtls_kafka: TlsKafka, tmp_path: Path):
    no_cert = {"security.protocol": "ssl", "ssl.ca.location": str(mtls_kafka.ca)}
    _fails_fast(
        ["ingest", "-b", mtls_kafka.bootstrap, "--topics", ".*", "--once", *_x(no_cert)],
        tmp_path / "lake",
        ["TLS handshake with Kafka broker", mtls_kafka.bootstrap, "client certificate"],
    )


def test_replay_target_with_wrong_ca_fails_fast(tls_kafka: TlsKafka, two_run_lake, tmp_path: Path):
    settings = tls_kafka.settings(**{"ssl.ca.location": str(other_ca(tmp_path))})
    started = time.monotonic()
    proc = run_kbak(
        "replay",
        "--lake",
        str(two_run_lake.lake),
        "-b",
        tls_kafka.bootstrap,
        "--topic-map",
        f"{two_run_lake.topic}=elsewhere",
        "--create-topics",
        "--connect-timeout",
        "20",
        *_x(settings),
    )
    line = one_line_error(proc)
    assert "TLS handshake with Kafka broker" in line and tls_kafka.bootstrap in line, line
    assert time.monotonic() - started < 15


def test_plaintext_client_to_tls_listener_times_out_clearly(tls_kafka: TlsKafka, tmp_path: Path):
    # No TLS error to see (the terminator just hangs up): reported as unreachable when the timeout ends.
    started = time.monotonic()
    proc = run_kbak(
        "ingest",
        "-b",
        tls_kafka.bootstrap,
        "--topics",
        ".*",
        "--once",
        "--lake",
        str(tmp_path / "lake"),
        "--connect-timeout",
        "3",
    )
    assert "cannot reach Kafka at " + tls_kafka.bootstrap in one_line_error(proc)
    assert 2.5 < time.monotonic() - started < 15
    assert not (tmp_path / "lake").exists()
