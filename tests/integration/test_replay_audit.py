"""The audit scenario end to end: archive several topics over months (on S3), then replay one quarter of
one topic under a new name to a different cluster and read it back."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from support.kbak_testing import consume_all, content, run_json

from pipeline.dev.sample import SAMPLE_TOPICS, create_topics, generate, produce
from pipeline.dev.servers import LocalBroker

Q2_START = int(datetime(2024, 4, 1, tzinfo=UTC).timestamp() * 1000)
Q2_END = int(datetime(2024, 7, 1, tzinfo=UTC).timestamp() * 1000) - 1


def test_audit_quarter_of_one_topic_to_another_cluster(kafka, s3, bucket, topic_name, tmp_path):
    names = {t: topic_name(f"audit-{t}") for t in SAMPLE_TOPICS}
    create_topics(kafka.bootstrap, {names[t]: n for t, n in SAMPLE_TOPICS.items()})
    rows = generate(3000, datetime(2024, 1, 1, tzinfo=UTC), days=200)
    produce(kafka.bootstrap, (dataclasses.replace(r, topic=names[r.topic]) for r in rows))
    lake = f"s3://{bucket}/archive"
    s3_args = ("--s3-endpoint", s3.endpoint)
    pattern = "|".join(names.values())

    ingested = run_json(
        "ingest", "-b", kafka.bootstrap, "--topics", pattern, "--lake", lake, "--once", *s3_args, env=s3.env()
    )
    assert ingested["records"] == 3000 and sorted(ingested["topics"]) == sorted(names.values())

    with LocalBroker(log=tmp_path / "other-cluster.log") as other:
        summary = run_json(
            "replay",
            "--lake",
            lake,
            *s3_args,
            "-b",
            other.bootstrap,
            "--topic",
            names["payments"],
            "--from",
            "2024-04-01",
            "--to",
            "2024-06-30",
            "--topic-map",
            f"{names['payments']}=payments-q2-audit",
            "--create-topics",
            env=s3.env(),
        )
        replayed = consume_all(other.bootstrap, "payments-q2-audit", SAMPLE_TOPICS["payments"])

    source = consume_all(kafka.bootstrap, names["payments"], SAMPLE_TOPICS["payments"])
    quarter = [r for r in source if Q2_START <= r.timestamp_ms <= Q2_END]
    assert 300 < len(quarter) < len(source)
    assert summary["records"] == len(replayed) == len(quarter)
    assert content(replayed) == content(quarter)
    assert summary["first_timestamp"] >= "2024-04-01" and summary["last_timestamp"] < "2024-07-01"
    assert list(summary["topics"]) == ["payments-q2-audit"]
