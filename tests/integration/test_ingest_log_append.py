"""Ingest writes its own Delta log entries and checkpoints (``pipeline/ingest/appender.py``): on S3 too.

Through the CLI against the moto server: many small commits from one ``kbak ingest``, crossing two
checkpoints (the first written by delta-rs, the second by kbak from it), then every reader and
check kbak has, and a second run that must archive nothing twice.
"""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
from support.custody_lakes import NOV_1_2024_MS, ingest, records
from support.kbak_testing import produce, run_kbak

from pipeline.core.storage import Lake, S3Settings
from pipeline.custody.manifest import checkpoint_path, log_path
from pipeline.dev.sample import create_topics
from pipeline.ingest.appender import ENGINE


def test_many_small_commits_to_s3_are_a_table_every_reader_reads(kafka, s3, bucket, topic_name):
    topic = topic_name("append")
    uri = f"s3://{bucket}/lake"
    lake_args = ("--lake", uri, "--s3-endpoint", s3.endpoint)
    env = s3.env()
    create_topics(kafka.bootstrap, {topic: 3})
    produce(kafka.bootstrap, records(topic, 66, NOV_1_2024_MS, 60_000))
    first = ingest(kafka, topic, uri, "--s3-endpoint", s3.endpoint, "--flush-records", "3", env=env)
    assert first["records"] == 66

    c = s3.client()

    def get(rel: str) -> bytes:
        return c.get_object(Bucket=bucket, Key=f"lake/{rel}")["Body"].read()

    head = max(
        int(o["Key"].rsplit("/", 1)[-1][:20])
        for o in c.list_objects_v2(Bucket=bucket, Prefix="lake/_delta_log/0")["Contents"]
    )
    assert head >= 20
    engines = {json.loads(get(log_path(v)).splitlines()[0])["commitInfo"]["engineInfo"] for v in range(1, head + 1)}
    assert engines == {ENGINE}
    assert "parquet-rs" in pq.read_metadata(io.BytesIO(get(checkpoint_path(9)))).created_by  # delta-rs's
    assert "arrow" in pq.read_metadata(io.BytesIO(get(checkpoint_path(19)))).created_by  # kbak's, from 9's

    proc = run_kbak("validate", *lake_args, "--full", "--deep", "--format", "json", env=env)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["valid"] and report["records"] == 66, proc.stdout
    assert count_records_s3(uri, s3, env) == 66

    again = ingest(kafka, topic, uri, "--s3-endpoint", s3.endpoint, "--flush-records", "3", env=env)
    assert again["records"] == 0  # exactly once: the offsets came back from kbak's own entries and checkpoint


def count_records_s3(uri: str, s3, env: dict) -> int:
    proc = run_kbak("query", "--lake", uri, "--s3-endpoint", s3.endpoint, "--sql", "select count(*) as n from records",
                    "-f", "json", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]["n"]


def test_write_new_on_s3_is_a_conditional_put(s3, bucket):
    """Two writers of one Delta version: the second finds it taken and its bytes are not written."""
    lake = Lake.at(f"s3://{bucket}/lake", S3Settings(s3.endpoint, s3.region, s3.access_key, s3.secret_key))
    assert lake.write_new("_delta_log/00000000000000000007.json", b'{"first":1}\n') is True
    assert lake.write_new("_delta_log/00000000000000000007.json", b'{"second":2}\n') is False
    assert lake.read_bytes("_delta_log/00000000000000000007.json") == b'{"first":1}\n'
