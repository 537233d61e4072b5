"""``kbak vacuum`` on the moto S3 server: every version deleted, or retained under Object Lock and said so."""

from __future__ import annotations

import json
import uuid

from support.custody_lakes import NOV_1_2024_MS, ingest, records
from support.kbak_testing import produce, run_json, run_kbak

from pipeline.dev.sample import create_topics


def _lake(s3, bucket: str) -> tuple[str, ...]:
    return ("--lake", f"s3://{bucket}/lake", "--s3-endpoint", s3.endpoint)


def _expire_first_day(kafka, s3, bucket: str, topic: str, *ingest_args: str) -> dict:
    """Ingest Nov 1..3 (2024), keep 1 day, apply on Nov 4: Nov 1 and 2 are removed; returns the apply."""
    create_topics(kafka.bootstrap, {topic: 2})
    produce(kafka.bootstrap, records(topic, 48, NOV_1_2024_MS, 3_600_000 + 30 * 60_000, partitions=2))
    ingest(kafka, topic, f"s3://{bucket}/lake", "--s3-endpoint", s3.endpoint, *ingest_args, env=s3.env())
    run_json("retention", "set", *_lake(s3, bucket), "--topics", topic, "--days", "1", env=s3.env())
    out = run_json("retention", "apply", *_lake(s3, bucket), "--now", "2024-11-04T00:00:00Z", env=s3.env())
    assert [p["date"] for p in out["partitions_removed"]] == ["2024-11-01", "2024-11-02"]
    return out


def _versions(s3, bucket: str, key: str) -> list[dict]:
    page = s3.client().list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in page.get("Versions", []) + page.get("DeleteMarkers", []) if v["Key"] == key]


def _removed(s3, bucket: str, version: int) -> list[str]:
    key = f"lake/_kbak/custody/{version:020d}.json"
    body = json.loads(s3.client().get_object(Bucket=bucket, Key=key)["Body"].read())["body"]
    return [f["path"] for f in body["files_removed"]]


def test_vacuum_on_s3_deletes_the_expired_files(kafka, s3, bucket, topic_name):
    applied = _expire_first_day(kafka, s3, bucket, topic_name("vac-s3"))
    removed = _removed(s3, bucket, applied["version"])
    assert all(_versions(s3, bucket, f"lake/{p}") for p in removed)
    dry = run_kbak("vacuum", *_lake(s3, bucket), "--dry-run", "--json", env=s3.env())
    assert {f["path"] for f in json.loads(dry.stdout)["files_deleted"]} == set(removed)
    assert all(_versions(s3, bucket, f"lake/{p}") for p in removed)  # a dry run deletes nothing
    out = run_json("vacuum", *_lake(s3, bucket), env=s3.env())
    assert {f["path"] for f in out["files_deleted"]} == set(removed) and out["files_retained"] == []
    assert not any(_versions(s3, bucket, f"lake/{p}") for p in removed)
    valid = run_kbak("validate", *_lake(s3, bucket), "--deep", "--format", "json", env=s3.env())
    assert valid.returncode == 0, valid.stdout


def test_vacuum_under_object_lock_retains_and_reports_until_when(kafka, s3, topic_name):
    bucket = s3.create_bucket(f"lock-{uuid.uuid4().hex[:10]}", object_lock=True)
    applied = _expire_first_day(kafka, s3, bucket, topic_name("vac-lock"), "--object-lock-days", "2")
    removed = _removed(s3, bucket, applied["version"])
    out = run_json("vacuum", *_lake(s3, bucket), env=s3.env())
    assert out["files_deleted"] == []
    assert {f["path"] for f in out["files_retained"]} == set(removed)
    assert all(f["reason"] == "object-lock" and f["retain_until"] for f in out["files_retained"])
    assert all(_versions(s3, bucket, f"lake/{p}") for p in removed)  # still there, every version
    text = run_kbak("vacuum", *_lake(s3, bucket), "--dry-run", env=s3.env())
    assert text.returncode == 0 and "under Object Lock until" in text.stdout
    again = run_json("vacuum", *_lake(s3, bucket), env=s3.env())  # nothing new: reported, not recorded again
    assert again["version"] is None and {f["path"] for f in again["files_retained"]} == set(removed)


def test_lifecycle_tiers_round_trip_data_files_only_and_never_expire(s3, bucket, tmp_path):
    c = s3.client()
    other = {"ID": "logs-bucket-cleanup", "Filter": {"Prefix": "elsewhere/"}, "Status": "Enabled",
             "Expiration": {"Days": 7}}  # fmt: skip
    c.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [other]})
    printed = run_json_plain("lifecycle", *_lake(s3, bucket), "--print", "--ia-days", "45", env=s3.env())
    ours = next(r for r in printed["Rules"] if r["ID"].startswith("kbak-data-tiers"))
    assert ours["Filter"] == {"Prefix": "lake/topic="}
    assert [(t["Days"], t["StorageClass"]) for t in ours["Transitions"]] == [(45, "STANDARD_IA"), (90, "GLACIER_IR")]
    assert "Expiration" not in ours
    stored_rules = c.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [r["ID"] for r in stored_rules] == ["logs-bucket-cleanup"]  # printing changes nothing

    applied = run_json_plain("lifecycle", *_lake(s3, bucket), "--apply", "--ia-days", "45", env=s3.env())
    assert applied["applied"] and applied["rules"] == 2
    stored = {r["ID"]: r for r in c.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert set(stored) == {"logs-bucket-cleanup", ours["ID"]}
    assert stored[ours["ID"]]["Filter"] == {"Prefix": "lake/topic="}
    assert [t["StorageClass"] for t in stored[ours["ID"]]["Transitions"]] == ["STANDARD_IA", "GLACIER_IR"]
    assert "Expiration" not in stored[ours["ID"]]


def test_lifecycle_bad_input(s3, bucket, tmp_path):
    local = run_kbak("lifecycle", "--lake", str(tmp_path / "lake"), "--apply")
    assert local.returncode == 1 and "local lake" in local.stderr and local.stderr.count("\n") == 1
    early = run_kbak("lifecycle", *_lake(s3, bucket), "--print", "--ia-days", "10", env=s3.env())
    assert early.returncode == 1 and "30 days" in early.stderr
    c = s3.client()
    glacier = {"ID": "compliance-7y", "Filter": {"Prefix": ""}, "Status": "Enabled",
               "Transitions": [{"Days": 90, "StorageClass": "DEEP_ARCHIVE"}], "Expiration": {"Days": 2555}}  # fmt: skip
    c.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [glacier]})
    refused = run_kbak("lifecycle", *_lake(s3, bucket), "--apply", env=s3.env())
    assert refused.returncode == 1 and "would break the table" in refused.stderr, refused.stderr
    assert [r["ID"] for r in c.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]] == ["compliance-7y"]


def run_json_plain(*args: str, env: dict) -> dict:
    proc = run_kbak(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
