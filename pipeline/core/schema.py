"""The archive's record schema: one row per Kafka record. A contract for every reader of the lake."""

from __future__ import annotations

import pyarrow as pa

from pipeline.core.errors import KbakError, NotAnArchiveError

# A Kafka (topic, partition) pair, as kbak keys its per-partition state (not confluent_kafka's TopicPartition).
TP = tuple[str, int]

HEADER_TYPE = pa.struct([pa.field("key", pa.string(), nullable=False), pa.field("value", pa.binary())])

RECORD_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("timestamp_type", pa.string(), nullable=False),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("headers", pa.list_(pa.field("element", HEADER_TYPE, nullable=False)), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("source_cluster", pa.string(), nullable=False),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

PARTITION_COLUMNS = ["topic", "date"]

# Delta keeps partition values in the log, not in the Parquet files: this is what a data file holds.
FILE_SCHEMA = pa.schema([f for f in RECORD_SCHEMA if f.name not in PARTITION_COLUMNS])

COLUMN_NAMES = RECORD_SCHEMA.names

TIMESTAMP_TYPES = {1: "create", 2: "log_append"}


def check_table_schema(actual: pa.Schema, partition_columns: list[str], where: str) -> None:
    """Refuse a table that kbak did not create, naming the first difference."""
    actual_names = actual.names
    if actual_names != COLUMN_NAMES:
        missing = [n for n in COLUMN_NAMES if n not in actual_names]
        extra = [n for n in actual_names if n not in COLUMN_NAMES]
        detail = f"missing {missing}" if missing else f"unexpected {extra}" if extra else "column order differs"
        raise NotAnArchiveError(f"{where} is a Delta table but not a kbak archive: {detail}")
    for field in RECORD_SCHEMA:
        got = actual.field(field.name).type
        if not same_type(got, field.type):
            raise NotAnArchiveError(
                f"{where} is a Delta table but not a kbak archive: column {field.name!r} is {got}, "
                f"expected {field.type}"
            )
    if list(partition_columns) != PARTITION_COLUMNS:
        raise KbakError(f"{where} is partitioned by {list(partition_columns)}, a kbak archive by {PARTITION_COLUMNS}")


def same_type(a: pa.DataType, b: pa.DataType) -> bool:
    # Delta round-trips strings/binaries as their large or view variants; compare by kind.
    def norm(t: pa.DataType) -> str:
        s = str(t)
        for old, new in (("large_", ""), ("string_view", "string"), ("binary_view", "binary")):
            s = s.replace(old, new)
        s = s.replace("not null", "").replace("element: ", "").replace("item: ", "")
        return s.replace(" ", "").replace("list_view", "list").replace("tz=UTC", "tz=utc").lower()

    return norm(a) == norm(b)
