"""No secret is ever written: run the commands with known secrets, then grep every output and object.

Secrets: a SASL password given as ``-X sasl.password=@file`` (and through ``KBAK_SASL_PASSWORD``),
a key password in the YAML via ``${VAR}``, the AWS secret key and session token. The test broker
speaks plaintext, so librdkafka carries the SASL settings without using them; kbak's own paths
(config, logs with ``KBAK_LOG=debug`` and librdkafka's ``debug=all`` lines, errors, summaries,
commit metadata, manifests, group snapshots, replay checkpoints, reports) are what is checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from support.kbak_testing import KBAK, one_line_error, produce, run_kbak

from pipeline.dev.sample import create_topics
from pipeline.dev.servers import free_port

SASL_SECRET = "sasl-Secret-7f3a9c1e"
ENV_SECRET = "env-Secret-55d0b2aa"
KEY_SECRET = "key-Secret-0c41e9d7"
AWS_SECRET = "aws-Secret-c4e2b8f1d9"
AWS_TOKEN = "aws-Token-93ab7e60f2"
SECRETS = (SASL_SECRET, ENV_SECRET, KEY_SECRET, AWS_SECRET, AWS_TOKEN)


def _assert_clean(where: str, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    for secret in SECRETS:
        assert secret.encode() not in data, f"{secret} found in {where}"


def test_no_secret_in_any_output_or_object(kafka, s3, bucket, topic_name, tmp_path: Path):
    src, dst = topic_name("sec-src"), topic_name("sec-dst")
    create_topics(kafka.bootstrap, {src: 2, dst: 2})
    produce(kafka.bootstrap, [{"topic": src, "partition": i % 2, "value": b"v%d" % i} for i in range(12)])
    pw = tmp_path / "sasl-password"
    pw.write_text(SASL_SECRET + "\n")
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(
        "mode: backup\n"
        "source:\n"
        f"  bootstrap_servers: [{kafka.bootstrap}]\n"
        f"  topics: {{include: [{src}]}}\n"
        "  security: {security_protocol: PLAINTEXT, sasl_username: alice, ssl_key_password: '${KEY_PW}'}\n"
    )
    env = {
        **s3.env(),
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,  # moto accepts any credentials when IAM is off
        "AWS_SESSION_TOKEN": AWS_TOKEN,
        "KEY_PW": KEY_SECRET,
        "KBAK_SASL_USERNAME": "alice",
        "KBAK_TARGET_SASL_PASSWORD": ENV_SECRET,
        "KBAK_LOG": "debug",
    }
    lake = ("--lake", f"s3://{bucket}/lake", "--s3-endpoint", s3.endpoint)
    ckpt = tmp_path / "replay.ckpt"
    report = tmp_path / "report.json"
    runs = [
        (
            "ingest",
            "--config",
            str(cfg),
            *lake,
            "--once",
            "--snapshot-groups",
            "--json",
            "-X",
            f"sasl.password=@{pw}",
            "-X",
            "debug=all",
        ),
        (
            "replay",
            *lake,
            "-b",
            kafka.bootstrap,
            "--topic-map",
            f"{src}={dst}",
            "--checkpoint",
            str(ckpt),
            "--json",
            "-X",
            "debug=all",
        ),
        ("query", *lake, "--sql", "SELECT count(*) AS n FROM records", "--format", "json"),
        ("list", *lake, "--format", "json"),
        ("describe", *lake, "--format", "json"),
        ("validate", *lake, "--format", "json"),
        ("report", *lake, "--period", datetime.now(UTC).strftime("%Y-%m"), "--format", "json", "--output", str(report)),
    ]
    for args in runs:
        proc = run_kbak(*args, env=env)
        assert proc.returncode == 0, f"kbak {args[0]}: {proc.stderr[-2000:]}"
        _assert_clean(f"kbak {args[0]} stdout", proc.stdout)
        _assert_clean(f"kbak {args[0]} stderr", proc.stderr)
        if args[0] == "ingest":
            assert json.loads(proc.stdout)["records"] == 12
            assert "librdkafka" in proc.stderr  # the debug lines were there to be checked
    # A failed authentication, with librdkafka's debug lines on: the password shows nowhere.
    bad = run_kbak(
        "ingest",
        "-b",
        kafka.bootstrap,
        "--topics",
        src,
        *lake,
        "--once",
        "-X",
        "debug=all",
        "-X",
        "security.protocol=sasl_plaintext",
        "-X",
        "sasl.mechanism=PLAIN",
        "-X",
        f"sasl.password={SASL_SECRET}",
        env=env,
        timeout=60,
    )
    _assert_clean("a failed ingest", bad.stdout + bad.stderr)
    assert one_line_error(bad)

    c = s3.client()
    keys = [o["Key"] for p in c.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in p.get("Contents", [])]
    assert any("_kbak/groups/" in k for k in keys) and any("_kbak/custody/" in k for k in keys)
    for key in keys:
        _assert_clean(key, c.get_object(Bucket=bucket, Key=key)["Body"].read())
    _assert_clean("replay checkpoint", ckpt.read_bytes())
    _assert_clean("report", report.read_bytes())


def test_secret_file_errors_name_the_file_not_the_value(tmp_path):
    missing = tmp_path / "nope"
    proc = run_kbak(
        "ingest", "-b", "127.0.0.1:1", "--topics", "x", "--lake", str(tmp_path / "l"), "-X", f"sasl.password=@{missing}"
    )
    assert f"cannot read sasl.password from @{missing}" in one_line_error(proc)
    assert not (tmp_path / "l").exists()


def test_no_secret_in_prometheus_metrics(kafka, tmp_path: Path, topic_name):
    topic = topic_name("sec-metrics")
    create_topics(kafka.bootstrap, {topic: 1})
    produce(kafka.bootstrap, [{"topic": topic, "value": b"v%d" % i} for i in range(5)])
    port = free_port()
    env = {**os.environ, "KBAK_SASL_PASSWORD": ENV_SECRET, "AWS_SECRET_ACCESS_KEY": AWS_SECRET}
    proc = subprocess.Popen(
        [KBAK, "ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(tmp_path / "lake"),
         "--continuous", "--flush-seconds", "0.5", "--metrics-port", str(port), "-q",
         "-X", f"sasl.password=@{_secret_file(tmp_path)}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline and "kbak_commits_total 1" not in text.replace(".0", ""):
            time.sleep(0.5)
            with contextlib.suppress(OSError):
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        assert "kbak_records_archived_total" in text, text[-2000:]
        _assert_clean("Prometheus metrics", text)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    _assert_clean("continuous ingest output", out + err)


def _secret_file(tmp_path: Path) -> Path:
    f = tmp_path / "pw"
    f.write_text(SASL_SECRET + "\n")
    return f
