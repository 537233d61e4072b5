"""Server-side encryption on every object kbak writes to S3 (moto server with a KMS key made there).

After real runs, a HEAD of every object in the bucket shows the algorithm (and the KMS key id):
data files, Delta log commits and checkpoints, ``_last_checkpoint``, custody manifests, group
snapshots and everything else under ``_kbak/``.
"""

from __future__ import annotations

import json

import yaml
from support.custody_lakes import ingest
from support.kbak_testing import one_line_error, produce, run_kbak

from pipeline.dev.sample import create_topics


def kms_key(s3) -> dict:
    return s3.client("kms").create_key(Description="kbak archive")["KeyMetadata"]


def heads(s3, bucket: str) -> dict[str, dict]:
    c = s3.client()
    pages = c.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return {k: c.head_object(Bucket=bucket, Key=k) for k in keys}


def _ingest_many_commits(kafka, s3, topic: str, lake: str, *extra: str) -> dict:
    create_topics(kafka.bootstrap, {topic: 2})
    produce(kafka.bootstrap, [{"topic": topic, "partition": i % 2, "value": b"sse-%d" % i} for i in range(60)])
    # --flush-records 5: twelve commits, so Delta writes a checkpoint (interval 10) and _last_checkpoint.
    return ingest(
        kafka, topic, lake, "--flush-records", "5", "--snapshot-groups", "--s3-endpoint", s3.endpoint, *extra,
        env=s3.env(),
    )  # fmt: skip


def test_sse_kms_on_every_object(kafka, s3, bucket, topic_name):
    key = kms_key(s3)
    out = _ingest_many_commits(
        kafka, s3, topic_name("sse"), f"s3://{bucket}/lake", "--sse", "aws:kms", "--sse-kms-key-id", key["Arn"]
    )
    assert out["records"] == 60 and out["commits"] >= 10
    # compact rewrites the twelve commits' small files (new data files, log commits, manifests).
    sse = ("--sse", "aws:kms", "--sse-kms-key-id", key["Arn"])
    compacted = run_kbak(
        "compact",
        "--lake",
        f"s3://{bucket}/lake",
        "--s3-endpoint",
        s3.endpoint,
        *sse,
        "--json",
        env=s3.env(),
        check=True,
    )
    assert json.loads(compacted.stdout)["groups"], compacted.stdout  # something was rewritten
    objects = heads(s3, bucket)
    kinds = {
        "data": [k for k in objects if k.endswith(".parquet") and "_delta_log" not in k],
        "log": [k for k in objects if k.startswith("lake/_delta_log/") and k.endswith(".json")],
        "checkpoint": [k for k in objects if k.endswith(".checkpoint.parquet")],
        "_last_checkpoint": [k for k in objects if k.endswith("_last_checkpoint")],
        "custody": [k for k in objects if k.startswith("lake/_kbak/custody/")],
        "groups": [k for k in objects if k.startswith("lake/_kbak/groups/")],
    }
    assert all(kinds.values()), {k: len(v) for k, v in kinds.items()}
    plain = {k: h.get("ServerSideEncryption") for k, h in objects.items() if h.get("ServerSideEncryption") != "aws:kms"}
    assert not plain, plain
    wrong_key = {k: h.get("SSEKMSKeyId") for k, h in objects.items() if key["KeyId"] not in h.get("SSEKMSKeyId", "")}
    assert not wrong_key, wrong_key

    # The custody manifests (and so describe) record what S3 reported for each version's files.
    lake = ("--lake", f"s3://{bucket}/lake", "--s3-endpoint", s3.endpoint)
    described = json.loads(
        run_kbak(
            "describe", *lake, "--backup-id", out["backup_id"], "--format", "json", env=s3.env(), check=True
        ).stdout
    )
    for v in described["versions"]:
        [enc] = v["encryption"]
        assert enc["sse"] == "aws:kms" and key["KeyId"] in enc["kms_key_id"]
        assert enc["objects"] == len(v["files_added"])

    # validate, told the lake's encryption, finds every object carries it ...
    env = {**s3.env(), "KBAK_SSE": "aws:kms", "KBAK_SSE_KMS_KEY_ID": key["KeyId"]}
    report = json.loads(run_kbak("validate", *lake, "--format", "json", env=env).stdout)
    assert report["valid"] and not [w for w in report["warnings"] if w["check"] == "encryption"]
    # ... and warns about an object written without it.
    s3.client().put_object(Bucket=bucket, Key="lake/_kbak/notes.txt", Body=b"dropped in by hand")
    report = json.loads(run_kbak("validate", *lake, "--format", "json", env=env).stdout)
    flagged = [w for w in report["warnings"] if w["check"] == "encryption"]
    assert [w["subject"] for w in flagged] == ["_kbak/notes.txt"], flagged
    assert "no server-side encryption" in flagged[0]["message"] and report["valid"]


def test_sse_aes256_from_yaml(kafka, s3, bucket, topic_name, tmp_path):
    topic = topic_name("sse-yaml")
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "mode": "backup",
                "storage": {"backend": "s3", "bucket": bucket, "prefix": "lake", "encryption": {"sse": "AES256"}},
            }
        )
    )
    out = _ingest_many_commits(kafka, s3, topic, f"s3://{bucket}/lake", "--config", str(cfg))
    assert out["records"] == 60
    algorithms = {k: h.get("ServerSideEncryption") for k, h in heads(s3, bucket).items()}
    assert algorithms and set(algorithms.values()) == {"AES256"}, algorithms


def test_bad_sse_values_are_one_line_errors(s3, bucket, tmp_path):
    for args, expect in [
        (["--sse", "rot13"], "--sse must be one of aws:kms, AES256"),
        (["--sse-kms-key-id", "k"], "--sse-kms-key-id needs --sse aws:kms"),
        (["--sse", "AES256", "--sse-kms-key-id", "k"], "--sse-kms-key-id goes with --sse aws:kms"),
    ]:
        proc = run_kbak(
            "ingest",
            "-b",
            "127.0.0.1:1",
            "--topics",
            "x",
            "--lake",
            f"s3://{bucket}/lake",
            "--s3-endpoint",
            s3.endpoint,
            *args,
            env=s3.env(),
        )
        assert expect in one_line_error(proc)
    assert "Contents" not in s3.client().list_objects_v2(Bucket=bucket)


def test_sse_on_a_local_lake_is_refused_before_anything_is_written(kafka, tmp_path):
    lake = tmp_path / "lake"
    for command in (["ingest", "-b", kafka.bootstrap, "--topics", "x", "--once"], ["compact"], ["vacuum"]):
        proc = run_kbak(*command, "--lake", str(lake), "--sse", "aws:kms", "--sse-kms-key-id", "alias/kbak")
        assert proc.returncode == 2
        assert "--sse applies to s3:// lakes" in one_line_error(proc)
    assert not lake.exists()
