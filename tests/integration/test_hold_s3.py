"""``kbak hold`` and ``kbak ingest --object-lock-days`` on the moto S3 server with an Object Lock bucket."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from support.custody_lakes import ingest, two_runs
from support.kbak_testing import run_kbak

from pipeline.custody.manifest import log_path, manifest_path


@pytest.fixture()
def locked_bucket(s3):
    return s3.create_bucket(f"lock-{uuid.uuid4().hex[:10]}", object_lock=True)


def lake_args(s3, bucket: str) -> tuple[str, ...]:
    return ("--lake", f"s3://{bucket}/lake", "--s3-endpoint", s3.endpoint)


def hold(s3, bucket: str, *args: str, code: int = 0):
    proc = run_kbak("hold", *lake_args(s3, bucket), *args, env=s3.env())
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    return proc


def status(s3, bucket: str) -> dict:
    return json.loads(hold(s3, bucket, "--status", "--format", "json").stdout)


def keys(s3, bucket: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="lake/")
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/"))


def assert_write_once(s3, bucket: str, key: str) -> None:
    """A held version cannot be deleted; a PUT adds a new version and leaves the held one intact."""
    c = s3.client()
    head = c.head_object(Bucket=bucket, Key=key)
    original = c.get_object(Bucket=bucket, Key=key)["Body"].read()
    with pytest.raises(ClientError) as err:
        c.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    forged = c.put_object(Bucket=bucket, Key=key, Body=b"overwritten")
    assert forged["VersionId"] != head["VersionId"]
    assert c.get_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])["Body"].read() == original
    c.delete_object(Bucket=bucket, Key=key, VersionId=forged["VersionId"])  # unheld: deletable
    assert c.head_object(Bucket=bucket, Key=key)["VersionId"] == head["VersionId"]


def test_ingest_object_lock_days_holds_what_each_commit_wrote(kafka, s3, locked_bucket, topic_name):
    topic = topic_name("lockdays")
    env = s3.env()
    first, _second = two_runs(kafka, topic, f"s3://{locked_bucket}/lake", "--s3-endpoint", s3.endpoint,
                              "--object-lock-days", "2", env=env)  # fmt: skip
    c = s3.client()
    written = [k for k in keys(s3, locked_bucket) if "/topic=" in k or k.endswith(("1.json", "2.json"))]
    expected = {f"lake/{log_path(v)}" for v in (1, 2)} | {f"lake/{manifest_path(v)}" for v in (1, 2)}
    assert expected <= set(written)
    soon = datetime.now(UTC) + timedelta(days=2)
    for key in written:
        h = c.head_object(Bucket=locked_bucket, Key=key)
        assert h["ObjectLockMode"] == "GOVERNANCE", key
        assert abs((h["ObjectLockRetainUntilDate"] - soon).total_seconds()) < 600, key
    assert_write_once(s3, locked_bucket, next(k for k in written if k.endswith(".parquet")))
    st = status(s3, locked_bucket)
    # version 0 (table creation) is not an ingest commit: only `kbak hold` covers it
    assert st["unprotected"] == 2 and set(st["unprotected_objects"]) == {log_path(0), manifest_path(0)}
    assert first["records"] == 60

    # A legal hold blocks deleting even an object without retention, until it is cleared.
    key = f"lake/{manifest_path(0)}"
    version = c.head_object(Bucket=locked_bucket, Key=key)["VersionId"]
    hold(s3, locked_bucket, "--legal-hold", "on")
    assert status(s3, locked_bucket)["legal_hold"] == len(keys(s3, locked_bucket))
    with pytest.raises(ClientError):
        c.delete_object(Bucket=locked_bucket, Key=key, VersionId=version)
    hold(s3, locked_bucket, "--legal-hold", "off")
    assert status(s3, locked_bucket)["legal_hold"] == 0
    c.delete_object(Bucket=locked_bucket, Key=key, VersionId=version)  # no retention: deletable again
    proc = run_kbak("validate", *lake_args(s3, locked_bucket), "--format", "json", env=s3.env())
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["errors"][0]["subject"] == manifest_path(0)


def test_hold_retention_legal_hold_and_status(kafka, s3, locked_bucket, topic_name):
    topic = topic_name("hold")
    two_runs(kafka, topic, f"s3://{locked_bucket}/lake", "--s3-endpoint", s3.endpoint, env=s3.env())
    objects = keys(s3, locked_bucket)
    assert status(s3, locked_bucket)["unprotected"] == len(objects)

    until = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    out = hold(s3, locked_bucket, "--until", until, "--mode", "compliance").stdout
    assert f"held {len(objects)} objects" in out
    st = status(s3, locked_bucket)
    assert st["objects"] == len(objects) and st["unprotected"] == 0 and st["legal_hold"] == 0
    assert st["retention"] == [{"mode": "COMPLIANCE", "until": until, "objects": len(objects)}]
    assert st["all_held_until"].startswith(until)
    for key in (next(k for k in objects if k.endswith(".parquet")), f"lake/{manifest_path(1)}"):
        assert_write_once(s3, locked_bucket, key)
    again = hold(s3, locked_bucket, "--until", until, "--mode", "COMPLIANCE").stdout
    assert f"{len(objects)} were already held" in again
    proc = run_kbak("report", *lake_args(s3, locked_bucket), "--period", "2024-11", "--format", "json", env=s3.env())
    holds = json.loads(proc.stdout)["holds"]
    assert holds["in_force"] and holds["retention"] == st["retention"]

    hold(s3, locked_bucket, "--legal-hold", "on")
    st = status(s3, locked_bucket)
    assert st["legal_hold"] == len(objects)
    text = hold(s3, locked_bucket, "--status").stdout
    assert f"{len(objects)} objects held until {until} (COMPLIANCE)" in text
    assert f"{len(objects)} objects under legal hold" in text
    hold(s3, locked_bucket, "--legal-hold", "off")
    assert status(s3, locked_bucket)["legal_hold"] == 0

    # The held lake still ingests (new versions are new objects) and still validates.
    assert ingest(kafka, topic, f"s3://{locked_bucket}/lake", "--s3-endpoint", s3.endpoint, env=s3.env())
    proc = run_kbak("validate", *lake_args(s3, locked_bucket), "--deep", env=s3.env())
    assert proc.returncode == 0, proc.stdout


def test_bucket_without_object_lock(s3, bucket):
    for args in (("--status",), ("--until", "2099-01-01"), ("--legal-hold", "on")):
        proc = hold(s3, bucket, *args, code=1)
        assert f"bucket {bucket} has no Object Lock" in proc.stderr and proc.stderr.count("\n") == 1


def test_ingest_with_object_lock_days_on_a_bucket_without_lock_fails_clearly(kafka, s3, bucket, topic_name):
    from support.kbak_testing import produce

    from pipeline.dev.sample import create_topics

    topic = topic_name("nolock2")
    create_topics(kafka.bootstrap, {topic: 1})
    produce(kafka.bootstrap, [{"topic": topic, "value": b"x"}])
    proc = run_kbak("ingest", "-b", kafka.bootstrap, "--topics", topic, *lake_args(s3, bucket), "--once",
                    "--object-lock-days", "1", env=s3.env())  # fmt: skip
    assert proc.returncode == 1
    assert f"bucket {bucket} has no Object Lock" in proc.stderr
    assert "Contents" not in s3.client().list_objects_v2(Bucket=bucket)  # checked before anything is written


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ((), 2, "give --until DATE"),
        (("--until", "2001-01-01"), 2, "is not in the future"),
        (("--until", "soon"), 2, "is not a date"),
        (("--until", "2099-01-01", "--mode", "FOREVER"), 2, "FOREVER"),
        (("--legal-hold", "maybe"), 2, "maybe"),
        (("--mode", "COMPLIANCE", "--status"), 2, "give --until DATE with it"),
    ],
)
def test_hold_bad_input(s3, locked_bucket, args, code, message):
    s3.client().put_object(Bucket=locked_bucket, Key="lake/_delta_log/00000000000000000000.json", Body=b"{}")
    proc = hold(s3, locked_bucket, *args, code=code)
    assert message in proc.stderr


def test_hold_on_a_local_lake_needs_s3(tmp_path):
    for args in (("--status",), ("--until", "2099-01-01"), ("--legal-hold", "on")):
        proc = run_kbak("hold", "--lake", str(tmp_path), *args)
        assert proc.returncode == 1
        assert "write-once storage needs S3" in proc.stderr
    assert "write-once storage needs S3" in run_kbak("ingest", "-b", "x:1", "-t", "t", "--lake", str(tmp_path),
                                                     "--object-lock-days", "1").stderr  # fmt: skip
