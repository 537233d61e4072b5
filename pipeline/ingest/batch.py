"""Turning consumed Kafka messages into Arrow columns of the record schema, column by column.

Per-record Python work is the ingest bottleneck, so each field is pulled out by one list
comprehension and handed to Arrow whole; headers are flattened into list offsets plus flat key and
value arrays instead of nested Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import chain
from operator import itemgetter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.schema import HEADER_TYPE, RECORD_SCHEMA, TIMESTAMP_TYPES

_TS = pa.timestamp("us", tz="UTC")


def messages_to_table(messages: Sequence, source_cluster: str, ingested_at: datetime) -> pa.Table:
    """One row per message, columns in the schema's order. ``messages`` are confluent_kafka Messages."""
    n = len(messages)
    stamps = [m.timestamp() for m in messages]
    ts_ms = pa.array([s[1] for s in stamps], pa.int64())
    ts = pc.multiply(ts_ms, 1000).cast(_TS)
    ts_types = [TIMESTAMP_TYPES.get(s[0], "create") for s in stamps]
    raw_headers = [m.headers() for m in messages]
    return pa.Table.from_arrays(
        [
            pa.array([m.topic() for m in messages], pa.string()),
            pa.array([m.partition() for m in messages], pa.int32()),
            pa.array([m.offset() for m in messages], pa.int64()),
            ts,
            pa.array(ts_types, pa.string()),
            _binary([m.key() for m in messages]),
            _binary([m.value() for m in messages]),
            headers_array(raw_headers),
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


def headers_array(raw: Sequence[list[tuple[str, bytes | None]] | None]) -> pa.ListArray:
    """Kafka headers as list<struct<key, value>>: order, duplicates and null values kept."""
    lengths = np.fromiter((len(h) if h else 0 for h in raw), np.int32, len(raw))
    offsets = np.zeros(len(raw) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = list(chain.from_iterable(filter(None, raw)))
    keys = pa.array(list(map(itemgetter(0), flat)), pa.string())
    values = _binary(list(map(itemgetter(1), flat)))
    structs = pa.StructArray.from_arrays([keys, values], fields=list(HEADER_TYPE))
    list_type = RECORD_SCHEMA.field("headers").type
    return pa.ListArray.from_arrays(pa.array(offsets), structs, type=list_type)


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
