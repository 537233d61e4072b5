"""The access log: query, replay, describe and the Python API's connect each append one record.

Local directory and S3 (a bucket of its own on the moto server); ``kbak report`` summarises it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from support.kbak_testing import produce, run_json, run_kbak

from pipeline.core.access_log import AccessLog
from pipeline.core.storage import Lake, S3Settings
from pipeline.dev.sample import create_topics

PERSONAL = "customer-0042@example.com"


def _records(log: AccessLog) -> list[dict]:
    return log.read()


def _exercise(kafka, lake: tuple[str, ...], log_uri: str, topic: str, env: dict) -> None:
    """Run every logged command once against ``lake`` with the log at ``log_uri``."""
    q = "SELECT count(*) AS n FROM records WHERE key = $customer"
    proc = run_kbak(
        "query",
        *lake,
        "--sql",
        q,
        "-p",
        f"customer={PERSONAL}",
        "--format",
        "json",
        "--access-log",
        log_uri,
        env=env,
        check=True,
    )
    assert json.loads(proc.stdout) == [{"n": 3}]
    run_kbak("describe", *lake, "--format", "json", "--access-log", log_uri, env=env, check=True)
    run_json(
        "replay",
        *lake,
        "-b",
        kafka.bootstrap,
        "--topic-map",
        f"{topic}={topic}-copy",
        "--create-topics",
        "--key",
        PERSONAL,
        env={**env, "KBAK_ACCESS_LOG": log_uri},
    )
    # The Python API's connect, configured through the environment only.
    code = (
        "import sys; from pipeline import Lake, connect; "
        "con = connect(Lake.at(sys.argv[1])); print(con.execute('select count(*) from records').fetchone()[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, lake[1]],
        capture_output=True,
        text=True,
        env={**env, "KBAK_ACCESS_LOG": log_uri},
        check=True,
    )
    assert out.stdout.strip() == "10"


def _check(records: list[dict], lake_uri: str) -> None:
    assert [r["command"] for r in records] == ["query", "describe", "replay", "connect"]
    for r in records:
        assert r["lake"] == lake_uri and "@" in r["who"] and r["at"].endswith("Z")
        assert r["table_version"] == 1
    query, _describe, replay, _connect = records
    assert query["query"] is None and len(query["sql_sha256"]) == 64 and query["rows"] == 1
    assert set(query["params"]) == {"customer"} and len(query["params"]["customer"]) == 64
    assert replay["rows"] == 3 and set(replay["params"]) >= {"key"}
    text = json.dumps(records)
    assert PERSONAL not in text and "0042" not in text  # parameter values only as keyed hashes


def _setup(kafka, topic: str, lake: str, env: dict, *extra: str) -> None:
    create_topics(kafka.bootstrap, {topic: 1})
    keys = [PERSONAL.encode()] * 3 + [b"someone-else"] * 7
    produce(kafka.bootstrap, [{"topic": topic, "key": k, "value": b"v%d" % i} for i, k in enumerate(keys)])
    run_json("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", lake, "--once", *extra, env=env)


def test_access_log_local(kafka, tmp_path: Path, topic_name, monkeypatch):
    topic, lake, log_dir = topic_name("acc"), str(tmp_path / "lake"), tmp_path / "access"
    _setup(kafka, topic, lake, {})
    _exercise(kafka, ("--lake", lake), str(log_dir), topic, {})
    monkeypatch.delenv("KBAK_ACCESS_LOG_KEY", raising=False)
    log = AccessLog(Lake.at(log_dir))
    records = _records(log)
    _check(records, lake)
    # Under the log's key the same value hashes the same way: an auditor holding it can match a value.
    assert (log_dir / "_key").exists()
    assert records[0]["params"] == log.param_hashes({"customer": PERSONAL})

    period = datetime.now(UTC).strftime("%Y-%m")
    report = json.loads(
        run_kbak(
            "report", "--lake", lake, "--period", period, "--format", "json", "--access-log", str(log_dir), check=True
        ).stdout
    )
    assert report["access"]["accesses"] == 4
    assert report["access"]["by_command"] == {"query": 1, "describe": 1, "replay": 1, "connect": 1}
    md = run_kbak(
        "report",
        "--lake",
        lake,
        "--period",
        period,
        "--output",
        str(tmp_path / "r.md"),
        "--access-log",
        str(log_dir),
        check=True,
    )
    assert md.returncode == 0 and "Accesses (access log)" in (tmp_path / "r.md").read_text()
    plain = run_kbak("report", "--lake", lake, "--period", period, "--format", "json", check=True)
    assert json.loads(plain.stdout)["access"] is None  # no log configured: no access section


def test_access_log_on_s3(kafka, s3, bucket, topic_name):
    log_bucket = s3.create_bucket(bucket + "-audit")
    topic, lake_uri = topic_name("acc-s3"), f"s3://{bucket}/lake"
    env = s3.env()
    _setup(kafka, topic, lake_uri, env, "--s3-endpoint", s3.endpoint)
    _exercise(kafka, ("--lake", lake_uri, "--s3-endpoint", s3.endpoint), f"s3://{log_bucket}/access", topic, env)
    log = AccessLog(
        Lake.at(
            f"s3://{log_bucket}/access",
            S3Settings(
                endpoint=s3.endpoint, region=s3.region, access_key_id=s3.access_key, secret_access_key=s3.secret_key
            ),
        )
    )
    _check(_records(log), lake_uri)
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=log_bucket)["Contents"]]
    assert len([k for k in keys if k.endswith(".jsonl")]) == 4
    # Nothing of the log went into the archive's bucket.
    assert not [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"] if "access" in o["Key"]]
