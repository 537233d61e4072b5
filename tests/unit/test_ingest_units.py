"""Unit tests of the pure pieces under ingest: topic selection, config expansion, Arrow building."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from confluent_kafka import Message

from pipeline.core.config import BackupConfig, expand_env, load_config
from pipeline.core.errors import KbakError
from pipeline.core.kafka import select_topics
from pipeline.core.schema import RECORD_SCHEMA, check_table_schema
from pipeline.ingest.batch import headers_array, without_partitions
from pipeline.ingest.writer import delta_stats


def test_select_topics_matches_whole_names_and_skips_internal_topics():
    names = ["orders", "orders-eu", "orders-internal", "payments", "__consumer_offsets", "xorders"]
    inc = [re.compile("orders.*"), re.compile("payments")]
    assert select_topics(names, inc, [re.compile(".*-internal")]) == ["orders", "orders-eu", "payments"]
    assert select_topics(names, [re.compile(".*")], []) == sorted(n for n in names if not n.startswith("__"))
    assert select_topics(names, [re.compile("__consumer_offsets")], []) == ["__consumer_offsets"]


def test_expand_env_with_defaults(monkeypatch):
    monkeypatch.setenv("KBAK_X", "v")
    assert expand_env("a ${KBAK_X} ${KBAK_UNSET_Y:-d}", "f") == "a v d"
    with pytest.raises(KbakError, match="KBAK_UNSET_Y is not set"):
        expand_env("${KBAK_UNSET_Y}", "f")


def test_config_maps_oso_security_names_to_librdkafka(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "source:\n  bootstrap_servers: a:1,b:2\n  security: {security_protocol: SASL_SSL, sasl_username: u}\n"
        "  kafka: {enable.ssl.certificate.verification: false}\n"
    )
    loaded = load_config(cfg, BackupConfig)
    assert loaded.source.bootstrap_servers == ["a:1", "b:2"]
    assert loaded.source.client_settings() == {
        "security.protocol": "SASL_SSL",
        "sasl.username": "u",
        "enable.ssl.certificate.verification": "false",
    }


def test_headers_array_keeps_order_duplicates_and_nulls():
    arr = headers_array([[("a", b"1"), ("a", None), ("b", b"")], None, []])
    assert arr.to_pylist() == [
        [{"key": "a", "value": b"1"}, {"key": "a", "value": None}, {"key": "b", "value": b""}],
        [],
        [],
    ]
    assert arr.type == RECORD_SCHEMA.field("headers").type


def test_delta_stats_are_millisecond_iso_and_exact():
    ts = pa.array([datetime(2024, 7, 1, 12, 0, 0, 123000, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC"))
    rows = pa.table(
        {
            "partition": pa.array([1, 3], pa.int32()),
            "offset": pa.array([10, 20], pa.int64()),
            "timestamp": ts,
            "timestamp_type": ["create", "create"],
            "key": pa.array([None, b"k"], pa.binary()),
            "value": pa.array([b"v", None], pa.binary()),
            "headers": pa.array([[], []], RECORD_SCHEMA.field("headers").type),
            "source_cluster": ["c", "c"],
            "ingested_at": ts,
        }
    )
    stats = json.loads(delta_stats(rows))
    assert stats["numRecords"] == 2
    assert stats["minValues"]["offset"] == 10 and stats["maxValues"]["partition"] == 3
    assert stats["minValues"]["timestamp"] == "2024-07-01T12:00:00.123Z"
    assert stats["nullCount"]["key"] == 1 and stats["nullCount"]["value"] == 1


def test_schema_check_names_the_difference():
    other = pa.schema([f if f.name != "offset" else pa.field("offset", pa.string()) for f in RECORD_SCHEMA])
    with pytest.raises(KbakError, match="column 'offset' is string"):
        check_table_schema(other, ["topic", "date"], "lake")
    check_table_schema(RECORD_SCHEMA, ["topic", "date"], "lake")


def test_without_partitions():
    t = pa.table({"topic": ["a", "a", "b"], "partition": pa.array([0, 1, 0], pa.int32())})
    assert without_partitions(t, {("a", 1)}).to_pylist() == [
        {"topic": "a", "partition": 0},
        {"topic": "b", "partition": 0},
    ]


def test_split_partitions_files_every_row_under_its_own_topic_and_date():
    import random
    from datetime import date, timedelta

    from pipeline.ingest.writer import _split_partitions

    rnd = random.Random(3)
    n = 3000
    topics = [rnd.choice(["pay", "user", "acct"]) for _ in range(n)]
    days = [date(2024, 1, 1) + timedelta(days=rnd.randrange(200)) for _ in range(n)]
    parts = [rnd.randrange(4) for _ in range(n)]
    table = pa.table(
        {
            "topic": topics,
            "date": pa.array(days, pa.date32()),
            "partition": pa.array(parts, pa.int32()),
            "offset": pa.array(range(n), pa.int64()),
        }
    )
    seen = 0
    keys = []
    for (topic, day), rows in _split_partitions(table):
        keys.append((topic, day))
        for r in rows.to_pylist():
            assert (r["topic"], r["date"].isoformat()) == (topic, day)
        for p in range(4):  # each Kafka partition keeps its offset order
            offsets = [r["offset"] for r in rows.to_pylist() if r["partition"] == p]
            assert offsets == sorted(offsets)
        seen += rows.num_rows
    assert seen == n and keys == sorted(set(keys))


def _msg(offset: int, value: bytes) -> Message:
    """A confluent_kafka Message (built directly, as a consumer would hand it over)."""
    return Message(
        topic="t",
        partition=0,
        offset=offset,
        key=b"k%d" % offset,
        value=value,
        headers=[("h", b"x")],
        timestamp=(1, 1_700_000_000_000 + offset),
    )


def test_target_file_size_caps_every_file_even_when_later_records_compress_worse():
    """Issue 14.10: the cap held per 65,536-row group only; compressible then random rows overshot it."""
    import io
    import random

    import pyarrow.parquet as pq

    from pipeline.core.schema import FILE_SCHEMA
    from pipeline.ingest.batch import messages_to_table
    from pipeline.ingest.writer import _encode

    rnd = random.Random(5)
    n = 40_000
    values = [b"abc%d" % i * 30 if i < n // 2 else rnd.randbytes(300) for i in range(n)]
    table = messages_to_table([_msg(i, v) for i, v in enumerate(values)], "c", datetime.now(UTC))
    target = 1 << 20
    files = list(_encode(table.select(FILE_SCHEMA.names), 3, target))
    assert len(files) > 2
    assert all(len(data) <= target for data, _rows in files)
    assert all(len(data) >= target * 3 // 4 for data, _rows in files[:-1])  # filled, not tiny
    back = pa.concat_tables(pq.read_table(io.BytesIO(data)) for data, _rows in files)
    assert back["offset"].to_pylist() == list(range(n))


def test_partition_state_reset_and_buffer_drop():
    from pipeline.ingest.buffer import Buffer
    from pipeline.ingest.partitions import Partitions

    state = Partitions()
    s = state[("t", 0)]
    s.assigned, s.done, s.end, s.expected = True, True, 10, 9
    s.reset(4)
    assert (s.expected, s.generation, s.done, s.end) == (4, 1, False, None)
    assert state.assigned() == {("t", 0)}
    state.unassign([("t", 0), ("t", 9)])
    assert state.assigned() == set() and ("t", 9) not in state

    buf = Buffer()
    assert not buf.due(1, 1, 0) and buf.take() is None
    buf.add(pa.table({"topic": ["t", "t", "u"], "partition": pa.array([0, 1, 0], pa.int32())}))
    assert buf.due(3, 1 << 30, 60) and not buf.due(4, 1 << 30, 60)
    buf.drop({("t", 1)})
    assert buf.rows == 2
    assert buf.take()["topic"].to_pylist() == ["t", "u"] and buf.rows == 0
