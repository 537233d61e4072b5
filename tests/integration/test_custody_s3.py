"""list, describe, validate (with tampering) and report on an S3 lake (moto) built by real ingest runs."""

from __future__ import annotations

import hashlib
import json

from support.custody_lakes import two_runs
from support.kbak_testing import run_kbak

from pipeline.custody.manifest import manifest_path


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
