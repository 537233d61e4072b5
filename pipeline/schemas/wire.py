"""The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then the encoded payload.

Protobuf payloads add message indexes after the id; Avro and JSON Schema payloads start right
after it. Only the framing is read here: the payload itself is ``decode``'s job.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

MAGIC = 0
HEADER_SIZE = 5


def schema_id(data: bytes | None) -> int | None:
    """The schema id of a wire-format payload, or None when ``data`` is not framed that way."""
    if data is None or len(data) < HEADER_SIZE or data[0] != MAGIC:
        return None
    return struct.unpack_from(">I", data, 1)[0]


def with_schema_id(data: bytes, new_id: int) -> bytes:
    """``data`` with its schema id replaced; every byte after the id is kept as is."""
    if schema_id(data) is None:
        raise ValueError("not a Confluent wire-format payload")
    return data[:1] + struct.pack(">I", new_id) + data[HEADER_SIZE:]


def schema_ids(column: pa.Array | pa.ChunkedArray) -> set[int]:
    """The distinct schema ids framed in a binary column (nulls and other payloads ignored).

    Vectorised: only the distinct 5-byte prefixes reach Python, so a flush of a million records
    costs one pass in Arrow.
    """
    return set(schema_id_counts(column))


def schema_id_counts(column: pa.Array | pa.ChunkedArray) -> dict[int, int]:
    """Records per schema id framed in a binary column (nulls and other payloads ignored)."""
    import pyarrow.compute as pc  # here: a query reads framing in SQL and never loads pyarrow

    if len(column) == 0:
        return {}
    framed = _framed_prefixes(column)
    counts = pc.value_counts(framed).to_pylist() if len(framed) else []
    out: dict[int, int] = {}
    for item in counts:
        sid = struct.unpack_from(">I", item["values"], 1)[0]
        out[sid] = out.get(sid, 0) + item["counts"]
    return out


def _framed_prefixes(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_binary(column.type):
        column = column.cast(pa.binary())
    prefixes = pc.binary_slice(column, 0, HEADER_SIZE)
    framed = pc.and_(pc.equal(pc.binary_length(prefixes), HEADER_SIZE), pc.starts_with(prefixes, "\x00"))
    return pc.filter(prefixes, pc.fill_null(framed, False))
