"""Gaps ingest recorded (records deleted by retention before kbak saw them) versus unexplained ones."""

from __future__ import annotations

import json

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient
from support.custody_lakes import ingest
from support.kbak_testing import produce, run_kbak, skip_on_tansu

from pipeline.dev.sample import create_topics


def test_records_deleted_before_archive_are_recorded_gaps(kafka, tmp_path, topic_name):
    skip_on_tansu(kafka, "DeleteRecords")
    topic = topic_name("deleted")
    create_topics(kafka.bootstrap, {topic: 1})
    produce(kafka.bootstrap, [{"topic": topic, "partition": 0, "value": b"v%d" % i} for i in range(10)])
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    for fut in admin.delete_records([TopicPartition(topic, 0, 4)]).values():
        fut.result(30)
    lake = tmp_path / "lake"
    summary = ingest(kafka, topic, str(lake))
    assert summary["records"] == 6
    assert [(g["first_missing"], g["last_missing"], g["reason"]) for g in summary["gaps"]] == [
        (0, 3, "deleted_before_archive")
    ]

    v = json.loads(run_kbak("validate", "--lake", str(lake), "--deep", "--format", "json").stdout)
    assert v["valid"] and v["warnings"] == []
    assert [(g["first_missing"], g["last_missing"], g["recorded"], g["reason"]) for g in v["gaps"]] == [
        (0, 3, True, "deleted_before_archive")
    ]
    runs = json.loads(run_kbak("list", "--lake", str(lake), "--format", "json").stdout)["runs"]
    assert runs[-1]["gaps"] == 1
