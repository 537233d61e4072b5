"""Payload bytes -> JSON text, with the kept schemas only (no registry).

- Confluent wire format (magic 0 + schema id): Avro through fastavro, Protobuf through the
  protobuf runtime (message chosen by the payload's message indexes), JSON Schema as the JSON it
  carries. References (Avro named types, ``.proto`` imports) come from the kept schemas too.
- Anything else: returned as is when it is UTF-8 JSON, otherwise None.

Never raises on bad input: a corrupt payload or an id with no kept schema decodes to None, and
``why_not`` says which. Parsed schemas are cached per id, so decoding costs one parse per row.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline.schemas.registry import is_serialized_descriptor
from pipeline.schemas.store import KeptSchema
from pipeline.schemas.wire import HEADER_SIZE, schema_id

if TYPE_CHECKING:
    import pyarrow as pa

Reader = Callable[[bytes], str]


class Decoder:
    """Decodes payloads with a fixed set of kept schemas (``{id: KeptSchema}``)."""

    def __init__(self, schemas: dict[int, KeptSchema]) -> None:
        self.schemas = schemas
        self._readers: dict[int, Reader | None] = {}
        self._errors: dict[int, str] = {}

    def decode(self, data: bytes | None) -> str | None:
        """The payload as JSON text, or None (not decodable: see ``why_not``)."""
        if data is None:
            return None
        sid = schema_id(data)
        if sid is None:
            return _plain_json(data)
        reader = self._reader(sid)
        if reader is None:
            return None
        try:
            return reader(data)
        except Exception:  # corrupt payload (truncated, wrong schema): NULL, never a failed query
            return None

    def why_not(self, data: bytes | None) -> str | None:
        """Why ``decode`` gives None for ``data`` (None when it decodes or is NULL)."""
        if data is None or self.decode(data) is not None:
            return None
        sid = schema_id(data)
        if sid is None:
            return "not JSON and not in the schema registry wire format"
        if sid not in self.schemas:
            return f"schema {sid} is not kept"
        if self._reader(sid) is None:
            return f"schema {sid} cannot be used: {self._errors.get(sid, 'unknown error')}"
        return f"payload does not decode with schema {sid}"

    def decode_array(self, column: pa.Array | pa.ChunkedArray) -> pa.Array:
        """``decode`` over an Arrow binary column (DuckDB's vectorised UDF calls this)."""
        return _strings([self.decode(v) for v in column.to_pylist()])

    def reason_array(self, column: pa.Array | pa.ChunkedArray) -> pa.Array:
        return _strings([self.why_not(v) for v in column.to_pylist()])

    def _reader(self, sid: int) -> Reader | None:
        if sid not in self._readers:
            kept = self.schemas.get(sid)
            reader = None
            if kept is not None:
                try:
                    reader = _BUILDERS[kept.schema_type](kept, self.schemas)
                except Exception as exc:  # a schema that does not parse: its payloads stay NULL
                    self._errors[sid] = " ".join(str(exc).split())[:200] or type(exc).__name__
            self._readers[sid] = reader
        return self._readers[sid]


def _plain_json(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
        json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None
    return text


def _to_json(obj) -> str:
    return json.dumps(obj, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def _json_default(v):
    if isinstance(v, bytes | bytearray):
        return base64.b64encode(v).decode("ascii")
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, decimal.Decimal | uuid.UUID):
        return str(v)
    raise TypeError(f"cannot encode {type(v).__name__} as JSON")


# -- Avro ---------------------------------------------------------------------------------------


def _avro_reader(kept: KeptSchema, schemas: dict[int, KeptSchema]) -> Reader:
    import fastavro

    named: dict = {}
    for ref in _references_first(kept, schemas):
        fastavro.parse_schema(json.loads(ref.schema), named_schemas=named)
    parsed = fastavro.parse_schema(json.loads(kept.schema), named_schemas=named)

    def read(data: bytes) -> str:
        buf = io.BytesIO(data)
        buf.seek(HEADER_SIZE)
        record = fastavro.schemaless_reader(buf, parsed, None)
        if buf.tell() != len(data):
            raise ValueError("trailing bytes after the Avro record")
        return _to_json(record)

    return read


# -- Protobuf -----------------------------------------------------------------------------------


def _protobuf_reader(kept: KeptSchema, schemas: dict[int, KeptSchema]) -> Reader:
    from confluent_kafka.schema_registry.common.serde import SchemaId
    from google.protobuf import descriptor_pb2, descriptor_pool, json_format
    from google.protobuf.message_factory import GetMessageClass

    pool = descriptor_pool.DescriptorPool()
    _add_well_known(pool)
    refs = _all_references(kept, schemas)
    names = {r.id: r.name for r in refs}
    sources = {r.name: schemas[r.id].schema for r in refs}  # for .proto source that imports them
    for ref in _references_first(kept, schemas):
        name = names.get(ref.id, f"ref-{ref.id}.proto")
        if not name.startswith("google/protobuf/"):
            pool.Add(_file_proto(ref, name, sources))
    fdp = _file_proto(kept, f"kbak-schema-{kept.id}.proto", sources)
    pool.Add(fdp)
    classes: dict[tuple[int, ...], type] = {}

    def message_class(indexes: list[int]):
        key = tuple(indexes)
        if key not in classes:
            desc = descriptor_pb2.DescriptorProto()
            level = fdp.message_type
            path = []
            for i in indexes:
                desc = level[i]
                path.append(desc.name)
                level = desc.nested_type
            full = ".".join(([fdp.package] if fdp.package else []) + path)
            classes[key] = GetMessageClass(pool.FindMessageTypeByName(full))
        return classes[key]

    def read(data: bytes) -> str:
        framing = SchemaId("PROTOBUF")
        payload = framing.from_bytes(io.BytesIO(data))
        msg = message_class(framing.message_indexes or [0])()
        msg.ParseFromString(payload.read())
        return json.dumps(
            json_format.MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True),
            ensure_ascii=False,
            separators=(",", ":"),
        )

    return read


def _file_proto(kept: KeptSchema, name: str, sources: dict[str, str]):
    """The kept schema's FileDescriptorProto: its serialized descriptor, or its ``.proto`` source compiled."""
    from google.protobuf import descriptor_pb2

    text = kept.extra.get("serialized") or kept.schema
    if is_serialized_descriptor(text):
        fdp = descriptor_pb2.FileDescriptorProto()
        fdp.ParseFromString(base64.b64decode(text))
        fdp.name = name
        return fdp
    from pipeline.schemas.proto_source import compile_proto

    imports = {k: v for k, v in sources.items() if k != name and not k.startswith("google/protobuf/")}
    return compile_proto(name, text, imports)


def _add_well_known(pool) -> None:
    from google.protobuf import (
        any_pb2,
        api_pb2,
        descriptor_pb2,
        duration_pb2,
        empty_pb2,
        field_mask_pb2,
        source_context_pb2,
        struct_pb2,
        timestamp_pb2,
        type_pb2,
        wrappers_pb2,
    )

    for module in (
        any_pb2,
        source_context_pb2,
        type_pb2,
        api_pb2,
        descriptor_pb2,
        duration_pb2,
        empty_pb2,
        field_mask_pb2,
        struct_pb2,
        timestamp_pb2,
        wrappers_pb2,
    ):
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)


# -- JSON Schema ----------------------------------------------------------------------------------


def _json_schema_reader(kept: KeptSchema, schemas: dict[int, KeptSchema]) -> Reader:
    def read(data: bytes) -> str:
        text = data[HEADER_SIZE:].decode("utf-8")
        json.loads(text)  # the payload must be JSON; the schema is kept for the reader, not needed to decode
        return text

    return read


_BUILDERS: dict[str, Callable[[KeptSchema, dict[int, KeptSchema]], Reader]] = {
    "AVRO": _avro_reader,
    "PROTOBUF": _protobuf_reader,
    "JSON": _json_schema_reader,
}


def _all_references(kept: KeptSchema, schemas: dict[int, KeptSchema], seen: set[int] | None = None) -> list:
    seen = set() if seen is None else seen
    out = []
    for ref in kept.references:
        if ref.id is None or ref.id in seen:
            continue
        seen.add(ref.id)
        target = schemas.get(ref.id)
        if target is None:
            raise ValueError(f"referenced schema {ref.id} ({ref.name}) is not kept")
        out.extend(_all_references(target, schemas, seen))
        out.append(ref)
    return out


def _references_first(kept: KeptSchema, schemas: dict[int, KeptSchema]) -> list[KeptSchema]:
    """The schemas ``kept`` references, transitively, each before the schemas that use it."""
    return [schemas[r.id] for r in _all_references(kept, schemas)]


def _strings(values: list[str | None]) -> pa.Array:
    import pyarrow as pa  # loaded by now (DuckDB hands UDFs Arrow batches); a query decoding nothing never loads it

    return pa.array(values, pa.string())
