"""``kbak iam-policy`` roles, enforced by a moto server with IAM on (see support.iam_s3 for its limits)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError
from support.iam_s3 import IamS3
from support.kbak_testing import one_line_error, produce, run_json, run_kbak

from pipeline.dev.sample import create_topics


@pytest.fixture(scope="module")
def iam_s3():
    with IamS3() as server:
        yield server


def policy(lake: str, role: str, *extra: str) -> dict:
    return json.loads(run_kbak("iam-policy", "--lake", lake, "--role", role, *extra, check=True).stdout)


def test_roles_on_a_lake_under_iam(kafka, iam_s3, topic_name, tmp_path):
    bucket = "iam-lake"
    iam_s3.client().create_bucket(Bucket=bucket)
    lake = f"s3://{bucket}/archive"
    topic = topic_name("iam")
    create_topics(kafka.bootstrap, {topic: 2})
    produce(kafka.bootstrap, [{"topic": topic, "partition": i % 2, "value": b"v%d" % i} for i in range(20)])
    ingester = iam_s3.user("ingester", policy(lake, "ingest"))
    auditor = iam_s3.user("auditor", policy(lake, "query"))
    common = ("--lake", lake, "--s3-endpoint", iam_s3.endpoint)

    # ingest role: ingests (data, log, custody manifests incl. the staged ones it removes) ...
    out = run_json("ingest", "-b", kafka.bootstrap, "--topics", topic, "--once", *common, env=iam_s3.env_for(ingester))
    assert out["records"] == 20
    # ... but cannot delete the archive's objects.
    listing = iam_s3.client().list_objects_v2(Bucket=bucket)["Contents"]
    data = [o["Key"] for o in listing if o["Key"].endswith(".parquet")]
    with pytest.raises(ClientError) as denied:
        iam_s3.client(ingester).delete_object(Bucket=bucket, Key=data[0])
    assert denied.value.response["Error"]["Code"] in ("AccessDenied", "403")

    # query role: query and validate work ...
    sql = f"SELECT count(*) AS n FROM records WHERE topic = '{topic}'"
    proc = run_kbak("query", *common, "--sql", sql, "--format", "json", env=iam_s3.env_for(auditor), check=True)
    assert json.loads(proc.stdout)[0]["n"] == 20
    proc = run_kbak("validate", *common, env=iam_s3.env_for(auditor))
    assert proc.returncode == 0, proc.stderr
    period = datetime.now(UTC).strftime("%Y-%m")
    report = run_kbak("report", *common, "--period", period, "--format", "json", env=iam_s3.env_for(auditor))
    assert report.returncode == 0 and json.loads(report.stdout)["validation"]["valid"], report.stderr
    # ... ingest fails at its start with one "access denied" line, having written nothing.
    before = iam_s3.client().list_objects_v2(Bucket=bucket)["KeyCount"]
    proc = run_kbak("ingest", "-b", kafka.bootstrap, "--topics", topic, "--once", *common, env=iam_s3.env_for(auditor))
    assert "access denied writing to " + lake in one_line_error(proc)
    assert iam_s3.client().list_objects_v2(Bucket=bucket)["KeyCount"] == before


def test_policy_shapes():
    lake = "s3://arch/lake"
    q = policy(lake, "query", "--kms-key-arn", "arn:aws:kms:eu-west-1:111122223333:key/k1")
    actions = {a for s in q["Statement"] for a in s["Action"]}
    assert actions == {
        "s3:ListBucket",
        "s3:GetObject",
        "kms:Decrypt",
        "s3:GetBucketObjectLockConfiguration",
        "s3:GetObjectRetention",
        "s3:GetObjectLegalHold",
    }
    assert q["Statement"][0]["Condition"] == {"StringLike": {"s3:prefix": ["lake", "lake/*"]}}
    i = policy(lake, "ingest", "--kms-key-arn", "arn:aws:kms:eu-west-1:111122223333:key/k1")
    put = next(s for s in i["Statement"] if "s3:PutObject" in s["Action"])
    assert put["Resource"] == "arn:aws:s3:::arch/lake/*"
    assert put["Condition"]["StringEquals"] == {
        "s3:x-amz-server-side-encryption": "aws:kms",
        "s3:x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:eu-west-1:111122223333:key/k1",
    }
    deletes = [s["Resource"] for s in i["Statement"] if "s3:DeleteObject" in s["Action"]]
    assert deletes == ["arn:aws:s3:::arch/lake/_kbak/custody/staged/*"]
    a = policy(lake, "admin", "--sse", "AES256")
    assert any("s3:DeleteObject" in s["Action"] and s["Resource"] == "arn:aws:s3:::arch/lake/*" for s in a["Statement"])
    for bad, expect in [
        (["--role", "root"], "--role must be one of"),
        (["--role", "query", "--kms-key-arn", "k1"], "--kms-key-arn must be a key ARN"),
    ]:
        assert expect in one_line_error(run_kbak("iam-policy", "--lake", lake, *bad))
    assert "local path" in one_line_error(run_kbak("iam-policy", "--lake", "/tmp/x", "--role", "query"))


def test_bucket_policy_requiring_sse_stops_ingest_at_its_start(kafka, iam_s3, topic_name):
    """The docs' ComplianceBackupWrite statement: without --sse, ingest fails before writing anything.

    moto applies the Deny but not its condition (so it would refuse an encrypted write too); the
    encrypted writes themselves are checked object by object in test_security_sse.py.
    """
    bucket = "policy-lake"
    admin = iam_s3.client()
    admin.create_bucket(Bucket=bucket)
    statement = {
        "Sid": "ComplianceBackupWrite",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}},
    }
    admin.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    topic = topic_name("policy")
    create_topics(kafka.bootstrap, {topic: 1})
    produce(kafka.bootstrap, [{"topic": topic, "value": b"v"}])
    lake = f"s3://{bucket}/archive"
    proc = run_kbak(
        "ingest",
        "-b",
        kafka.bootstrap,
        "--topics",
        topic,
        "--once",
        "--lake",
        lake,
        "--s3-endpoint",
        iam_s3.endpoint,
        env=iam_s3.env_for(),
    )
    line = one_line_error(proc)
    assert f"access denied writing to {lake}" in line and "pass --sse aws:kms" in line, line
    assert admin.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
