"""Shared by the custody tests (no tests here): building lakes through real ``kbak ingest`` runs."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pyarrow as pa

from pipeline.core.schema import RECORD_SCHEMA
from pipeline.dev.sample import create_topics
from support.kbak_testing import produce, run_json, run_kbak

NOV_1_2024_MS = 1_730_419_200_000
DAY_MS = 86_400_000


def records(topic: str, n: int, start_ms: int, step_ms: int, partitions: int = 3, tag: str = "v") -> list[dict]:
    return [
        {"topic": topic, "partition": i % partitions, "key": b"k%d" % i, "value": f"{tag}{i}".encode(),
         "timestamp": start_ms + i * step_ms}
        for i in range(n)
    ]  # fmt: skip


def ingest(kafka, topic: str, lake: str, *extra: str, env: dict | None = None) -> dict:
    return run_json("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", lake, "--once", *extra, env=env)


def count_records(lake, as_of: int | None = None) -> int:
    """``select count(*) from records`` through ``kbak query`` (as of a version, for time travel)."""
    args = ("--as-of", str(as_of)) if as_of is not None else ()
    proc = run_kbak("query", "--lake", str(lake), "--sql", "select count(*) as n from records", "-f", "json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]["n"]


def two_runs(kafka, topic: str, lake: str, *extra: str, env: dict | None = None) -> tuple[dict, dict]:
    """Run 1: 60 records on 2024-11-01..03; run 2: 30 records on 2024-11-05. Versions 1 and 2."""
    create_topics(kafka.bootstrap, {topic: 3})
    produce(kafka.bootstrap, records(topic, 60, NOV_1_2024_MS, 3_600_000))
    first = ingest(kafka, topic, lake, *extra, env=env)
    produce(kafka.bootstrap, records(topic, 30, NOV_1_2024_MS + 4 * DAY_MS, 60_000, tag="w"))
    second = ingest(kafka, topic, lake, *extra, env=env)
    return first, second


def record_rows(topic: str, partition: int, first: int, n: int) -> pa.Table:
    """``n`` archive rows of one partition from offset ``first``, all on 2024-11-02 (for commit-path tests)."""
    ts = datetime(2024, 11, 2, tzinfo=UTC)
    return pa.table(
        {
            "topic": [topic] * n,
            "partition": [partition] * n,
            "offset": list(range(first, first + n)),
            "timestamp": [ts] * n,
            "timestamp_type": ["create"] * n,
            "key": [b"k"] * n,
            "value": [b"v%d" % i for i in range(n)],
            "headers": [[] for _ in range(n)],
            "date": [date(2024, 11, 2)] * n,
            "source_cluster": ["c"] * n,
            "ingested_at": [ts] * n,
        },
        schema=RECORD_SCHEMA,
    )
