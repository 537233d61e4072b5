"""list, describe, validate (with tampering) and report on an S3 lake (moto) built by real ingest runs."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from support.custody_lakes import NOV_1_2024_MS, ingest, records, two_runs
from support.kbak_testing import produce, run_kbak

from pipeline.custody.manifest import manifest_path
from pipeline.dev.sample import create_topics
from pipeline.dev.servers import LocalS3, free_port


def test_custody_commands_on_s3(kafka, s3, bucket, topic_name, tmp_path):
    topic = topic_name("s3custody")
    env = s3.env()
    lake = ("--lake", f"s3://{bucket}/lake", "--s3-endpoint", s3.endpoint)
    first, second = two_runs(kafka, topic, f"s3://{bucket}/lake", "--s3-endpoint", s3.endpoint, env=env)

    def kbak(*args: str, code: int = 0):
        proc = run_kbak(*args, *lake, env=env)
        assert proc.returncode == code, (proc.stdout, proc.stderr)
        return proc.stdout

    runs = json.loads(kbak("list", "--format", "json"))["runs"]
    assert [r["backup_id"] for r in runs[1:]] == [first["backup_id"], second["backup_id"]]
    assert [r["records"] for r in runs] == [0, 60, 30]

    d = json.loads(kbak("describe", "--version", "1", "--format", "json"))
    c = s3.client()
    for path, digest in d["checksums"].items():
        body = c.get_object(Bucket=bucket, Key=f"lake/{path}")["Body"].read()
        assert digest == "sha256:" + hashlib.sha256(body).hexdigest()

    report = json.loads(kbak("validate", "--deep", "--format", "json"))
    assert report["valid"] and report["records"] == 90 and report["warnings"] == []

    rep = json.loads(kbak("report", "--period", "2024-11", "--format", "json"))
    assert rep["topics"][0]["records"] == 90 and rep["validation"]["valid"]
    assert rep["holds"]["in_force"] is False and "no Object Lock" in rep["holds"]["note"]

    # Tamper through the S3 API: flip one byte of a data file, delete a manifest.
    victim = sorted(d["checksums"])[0]
    data = bytearray(c.get_object(Bucket=bucket, Key=f"lake/{victim}")["Body"].read())
    data[len(data) // 2] ^= 0xFF
    c.put_object(Bucket=bucket, Key=f"lake/{victim}", Body=bytes(data))
    c.delete_object(Bucket=bucket, Key=f"lake/{manifest_path(2)}")

    out = kbak("validate", "--deep", code=1)
    assert out.startswith("INVALID")
    report = json.loads(kbak("validate", "--deep", "--format", "json", code=1))
    failing = {(e["check"], e["subject"]) for e in report["errors"]}
    assert ("file-sha256", victim) in failing
    assert ("manifest-present", manifest_path(2)) in failing
    assert json.loads(kbak("report", "--period", "2024-11", "--format", "json"))["validation"]["valid"] is False


@pytest.fixture(scope="module")
def s3_auth():
    """A second moto server that checks credentials (only its IAM user's key is accepted)."""
    with LocalS3(auth=True) as server:
        yield server


NO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}

COMMANDS = {  # command -> exit code on a storage error (validate: 3 = could not check, never 1 = invalid)
    ("list",): 1,
    ("describe",): 1,
    ("validate",): 3,
    ("validate", "--deep"): 3,
    ("validate", "--repair"): 3,
    ("report", "--period", "2024-11"): 1,
    ("query", "--sql", "select count(*) from records"): 1,
}


def test_credential_errors_are_one_line_naming_the_lake(kafka, s3_auth, topic_name):
    topic = topic_name("s3auth")
    bucket = s3_auth.create_bucket(f"auth-{uuid.uuid4().hex[:10]}")
    uri = f"s3://{bucket}/lake"
    create_topics(kafka.bootstrap, {topic: 1})
    produce(kafka.bootstrap, records(topic, 6, NOV_1_2024_MS, 60_000, partitions=1))
    ingest(kafka, topic, uri, "--s3-endpoint", s3_auth.endpoint, env=s3_auth.env())
    good = s3_auth.env()
    cases = {
        "wrong key id": ({**good, "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG1"}, f"access denied to {uri}: check AWS"),
        "wrong secret": ({**good, "AWS_SECRET_ACCESS_KEY": "wrong"}, f"access denied to {uri}: check AWS"),
        "no credentials": ({**good, **NO_CREDENTIALS}, f"no AWS credentials found for {uri}"),
    }
    for what, (env, message) in cases.items():
        for cmd, code in COMMANDS.items():
            proc = run_kbak(*cmd, "--lake", uri, "--s3-endpoint", s3_auth.endpoint, env=env)
            assert proc.returncode == code, (what, cmd, proc.stderr)
            assert proc.stderr.splitlines() == [f"kbak: error: {proc.stderr.strip().removeprefix('kbak: error: ')}"]
            assert message in proc.stderr and "Traceback" not in proc.stderr, (what, cmd, proc.stderr)
    # The right key still works, and a missing bucket is named as such.
    assert run_kbak("validate", "--lake", uri, "--s3-endpoint", s3_auth.endpoint, env=good).returncode == 0
    missing = f"s3://no-such-{uuid.uuid4().hex[:8]}/lake"
    for cmd, code in ((("list",), 2), (("validate",), 2), (("query", "--sql", "select 1"), 1)):
        proc = run_kbak(*cmd, "--lake", missing, "--s3-endpoint", s3_auth.endpoint, env=good)
        assert proc.returncode == code, (cmd, proc.stderr)
        assert proc.stderr.strip().endswith(f"bucket {missing[5:].split('/')[0]} of lake {missing} does not exist"), (
            cmd,
            proc.stderr,
        )


def test_unreachable_endpoint_is_one_line_and_validate_exits_3(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    for cmd, code in ((("validate",), 3), (("list",), 1), (("query", "--sql", "select 1"), 1)):
        proc = run_kbak(*cmd, "--lake", "s3://somewhere/lake", "--s3-endpoint", dead, env=env)
        assert proc.returncode == code, (cmd, proc.stderr)
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"kbak: error: cannot reach {dead} for lake s3://somewhere/lake: "), line
