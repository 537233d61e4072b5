"""The archive is a standard Delta table: polars' and DuckDB's own Delta readers read it, not only kbak.

Also checks what BI tools depend on: checkpoints actually written, a protocol every reader
supports, statistics on the columns audits filter by, and seven years of log retention.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import duckdb_extension_delta
import duckdb_extension_httpfs
import polars as pl
import pyarrow as pa
from confluent_kafka import Consumer, TopicPartition
from deltalake import DeltaTable
from support.custody_lakes import ingest
from support.kbak_testing import Rec, consume_all, produce

from pipeline.core.storage import Lake, S3Settings
from pipeline.core.table import committed_offsets
from pipeline.dev.sample import create_topics
from pipeline.ingest.batch import messages_to_table
from pipeline.ingest.commit import commit_records, ensure_table

RECORDS = 120


def _records(topic: str) -> list[dict]:
    return [
        {
            "topic": topic,
            "partition": i % 3,
            "key": None if i % 7 == 0 else f"k{i}".encode(),
            "value": None if i % 11 == 0 else bytes([i % 256]) * (i % 5),
            "headers": [("h", f"{i}".encode()), ("h", None)],
            "timestamp": 1_719_792_000_000 + i * 7_200_000,  # two-hourly from 2024-07-01
        }
        for i in range(RECORDS)
    ]


def _recs(rows: list[dict]) -> list[Rec]:
    return sorted((Rec.from_row(r) for r in rows), key=lambda r: (r.partition, r.offset))


def _archive_in_small_commits(bootstrap: str, topic: str, partitions: int, uri: str) -> list[int]:
    """Archive ``topic`` through kbak's own commit path, ten records per commit (version), so that
    checkpoints fall due: ``kbak ingest`` would make one commit of so few records."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"bi-{time.time_ns()}", "enable.partition.eof": True}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    messages, eof = [], set()
    deadline = time.monotonic() + 30
    while len(eof) < partitions and time.monotonic() < deadline:
        for m in consumer.consume(1000, 0.5):
            if m.error():
                eof.add(m.partition())
            else:
                messages.append(m)
    consumer.close()
    lake = Lake.at(uri)
    dt = ensure_table(lake)
    versions = []
    for start in range(0, len(messages), 10):
        table = messages_to_table(messages[start : start + 10], "bi-cluster", datetime.now(UTC))
        parts = sorted({(m.topic(), m.partition()) for m in messages[start : start + 10]})
        dt.update_incremental()  # the fence is read from the table as it is now (seal no longer reloads it)
        have = committed_offsets(dt, "bi-cluster", parts)
        result = commit_records(
            lake, dt, table, {tp: have.get(tp) for tp in parts}, source_cluster="bi-cluster", backup_id="bi"
        )
        versions.append(result.version)
    return versions


def _ext(module) -> str:
    name = module.__name__.removeprefix("duckdb_extension_")
    return str(Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension")


def _duckdb_rows(uri: str, secret: str | None = None, version: int | None = None) -> list[dict]:
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute("SET TimeZone = 'UTC'")
    if secret:
        con.execute(f"LOAD '{_ext(duckdb_extension_httpfs)}'")
        con.execute(secret)
    con.execute(f"LOAD '{_ext(duckdb_extension_delta)}'")
    pinned = "" if version is None else f", version => {version}"
    return con.execute(f"SELECT * FROM delta_scan('{uri}'{pinned})").to_arrow_table().to_pylist()


def test_polars_and_duckdb_read_a_checkpointed_table(kafka, tmp_path, topic_name):
    topic = topic_name("bi")
    create_topics(kafka.bootstrap, {topic: 3})
    produce(kafka.bootstrap, _records(topic))
    lake = str(tmp_path / "lake")
    versions = _archive_in_small_commits(kafka.bootstrap, topic, 3, lake)
    assert versions == list(range(1, RECORDS // 10 + 1))

    log = sorted(p.name for p in (Path(lake) / "_delta_log").iterdir())
    assert any(n.endswith(".checkpoint.parquet") for n in log), log
    assert "_last_checkpoint" in log

    source = consume_all(kafka.bootstrap, topic, 3)
    assert _recs(pl.read_delta(lake).to_dicts()) == source
    assert _recs(_duckdb_rows(lake)) == source

    # Time travel with both readers: the first ingest commit (version 1) holds its rows only.
    dt = DeltaTable(lake)
    first = dt.history()[-2]
    assert first["version"] == 1
    n1 = first["kbak.records"]
    assert n1 == 10
    assert pl.read_delta(lake, version=1).height == n1 == len(_duckdb_rows(lake, version=1))


def test_table_properties_bi_tools_rely_on(kafka, tmp_path, topic_name):
    topic = topic_name("biprops")
    create_topics(kafka.bootstrap, {topic: 3})
    produce(kafka.bootstrap, _records(topic)[:20])
    lake = str(tmp_path / "lake")
    ingest(kafka, topic, lake)
    dt = DeltaTable(lake)

    protocol = dt.protocol()
    assert protocol.min_reader_version == 1 and not protocol.reader_features  # every Delta reader
    config = dt.metadata().configuration
    assert config["delta.logRetentionDuration"] == "interval 2557 days"  # seven years of time travel
    assert config["kbak.removedFileRetentionDuration"] == "interval 2557 days"  # kbak vacuum keeps them seven years
    assert config["delta.deletedFileRetentionDuration"] == "interval 7 days"  # a week of tombstones per checkpoint
    assert config["delta.checkpointInterval"] == "10"

    adds = pl.from_arrow(pa.table(dt.get_add_actions(flatten=True)))
    for column in ("timestamp", "offset", "partition"):
        assert adds[f"min.{column}"].null_count() == 0 and adds[f"max.{column}"].null_count() == 0, column
    assert adds["min.offset"].min() == 0 and adds["max.offset"].max() == 6  # 20 records over 3 partitions


def test_polars_and_duckdb_read_an_s3_lake(kafka, s3, bucket, topic_name):
    topic = topic_name("bis3")
    create_topics(kafka.bootstrap, {topic: 3})
    produce(kafka.bootstrap, _records(topic)[:30])
    uri = f"s3://{bucket}/lake"
    ingest(kafka, topic, uri, "--s3-endpoint", s3.endpoint, env=s3.env())
    source = consume_all(kafka.bootstrap, topic, 3)

    options = Lake.at(
        uri, S3Settings(endpoint=s3.endpoint, access_key_id=s3.access_key, secret_access_key=s3.secret_key)
    ).storage_options
    assert _recs(pl.read_delta(uri, storage_options=options).to_dicts()) == source

    secret = (
        f"CREATE SECRET (TYPE s3, KEY_ID '{s3.access_key}', SECRET '{s3.secret_key}', REGION '{s3.region}', "
        f"ENDPOINT '127.0.0.1:{s3.port}', USE_SSL false, URL_STYLE 'path')"
    )
    assert _recs(_duckdb_rows(uri, secret)) == source
