"""Turning consumed Kafka messages into Arrow columns of the record schema, column by column.

Per-record Python work is the ingest bottleneck, so each field is pulled out by one ``map`` of the
Message method (no Python frame per record) and handed to Arrow whole, and the headers' nested
lists are converted by pyarrow in C++.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from operator import itemgetter

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Message

from pipeline.core.schema import RECORD_SCHEMA, TIMESTAMP_TYPES

_TS = pa.timestamp("us", tz="UTC")


def messages_to_table(messages: Sequence, source_cluster: str, ingested_at: datetime) -> pa.Table:
    """One row per message, columns in the schema's order. ``messages`` are confluent_kafka Messages."""
    n = len(messages)
    stamps = list(map(Message.timestamp, messages))
    ts_ms = pa.array(list(map(itemgetter(1), stamps)), pa.int64())
    ts = pc.multiply(ts_ms, 1000).cast(_TS)
    kinds = set(map(itemgetter(0), stamps))
    if len(kinds) == 1:  # one timestamp type per topic is the rule
        ts_types = pa.repeat(pa.scalar(TIMESTAMP_TYPES.get(kinds.pop(), "create"), pa.string()), n)
    else:
        ts_types = pa.array([TIMESTAMP_TYPES.get(s[0], "create") for s in stamps], pa.string())
    return pa.Table.from_arrays(
        [
            pa.array(list(map(Message.topic, messages)), pa.string()),
            pa.array(list(map(Message.partition, messages)), pa.int32()),
            pa.array(list(map(Message.offset, messages)), pa.int64()),
            ts,
            ts_types,
            _binary(list(map(Message.key, messages))),
            _binary(list(map(Message.value, messages))),
            headers_array(list(map(Message.headers, messages))),
            ts.cast(pa.date32()),
            pa.repeat(pa.scalar(source_cluster, pa.string()), n),
            pa.repeat(pa.scalar(ingested_at, _TS), n),
        ],
        schema=RECORD_SCHEMA,
    )


def _binary(items: list[bytes | None]) -> pa.Array:
    # pyarrow converts bytes objects to large_binary several times faster than to binary; the cast
    # back only narrows the offsets.
    return pa.array(items, pa.large_binary()).cast(pa.binary())


_HEADERS = RECORD_SCHEMA.field("headers").type


def headers_array(raw: Sequence[list[tuple[str, bytes | None]] | None]) -> pa.ListArray:
    """Kafka headers as list<struct<key, value>>: order, duplicates and null values kept.

    pyarrow converts the nested Python lists in one C++ pass (2.5x faster than flattening them in
    Python); a message without headers (None) becomes an empty list, never a null.
    """
    arr = pa.array(raw, _HEADERS)
    if arr.null_count:
        # A null entry spans no values (its offsets are equal): dropping the validity makes it empty.
        arr = pa.ListArray.from_arrays(arr.offsets, arr.values, type=_HEADERS)
    return arr


def partition_mask(table: pa.Table, partitions) -> pa.ChunkedArray | None:
    """Boolean mask of the rows belonging to any of the given (topic, partition) pairs."""
    mask = None
    for topic, partition in partitions:
        hit = pc.and_(pc.equal(table["topic"], topic), pc.equal(table["partition"], partition))
        mask = hit if mask is None else pc.or_(mask, hit)
    return mask


def without_partitions(table: pa.Table, partitions) -> pa.Table:
    mask = partition_mask(table, partitions)
    return table if mask is None else table.filter(pc.invert(mask))


def only_partitions(table: pa.Table, partitions) -> pa.Table:
    mask = partition_mask(table, partitions)
    return table.slice(0, 0) if mask is None else table.filter(mask)
