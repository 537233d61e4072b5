"""Pure functions of the schema support: wire framing, decoding with kept schemas, the SQL prefilter."""

from __future__ import annotations

import io
import json
import struct

import duckdb
import fastavro
import pyarrow as pa
import pytest

from pipeline.query.decoding import DECODING_MACROS
from pipeline.schemas.decode import Decoder
from pipeline.schemas.store import KeptSchema, Reference
from pipeline.schemas.wire import schema_id, schema_id_counts, with_schema_id

CUSTOMER = {"type": "record", "name": "Customer", "namespace": "t", "fields": [{"name": "id", "type": "string"}]}
ORDER = {
    "type": "record",
    "name": "Order",
    "namespace": "t",
    "fields": [{"name": "customer", "type": "t.Customer"}, {"name": "cents", "type": "long"}],
}


def _framed(sid: int, body: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", sid) + body


def _avro(schema: dict, named: dict, obj: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema, named_schemas=named), obj)
    return buf.getvalue()


def test_schema_id_and_rewrite_keep_the_payload():
    data = _framed(7, b"payload")
    assert schema_id(data) == 7
    assert schema_id(b"\x00\x00\x00") is None and schema_id(b"{}") is None and schema_id(None) is None
    out = with_schema_id(data, 70000)
    assert schema_id(out) == 70000 and out[5:] == b"payload"
    with pytest.raises(ValueError):
        with_schema_id(b"{}", 1)


def test_schema_id_counts_per_column():
    col = pa.chunked_array([[_framed(1, b"a"), None, b"{}", _framed(1, b""), _framed(2, b"x"), b"\x00\x01"]])
    assert schema_id_counts(col) == {1: 2, 2: 1}
    assert schema_id_counts(pa.chunked_array([], pa.binary())) == {}


def test_avro_with_a_reference_decodes_and_bad_bytes_are_null():
    named: dict = {}
    fastavro.parse_schema(CUSTOMER, named_schemas=named)
    body = _avro(ORDER, named, {"customer": {"id": "c-1"}, "cents": 5})
    kept = {
        1: KeptSchema(1, "AVRO", json.dumps(CUSTOMER)),
        2: KeptSchema(2, "AVRO", json.dumps(ORDER), references=(Reference("t.Customer", "c-value", 1, 1),)),
    }
    d = Decoder(kept)
    assert json.loads(d.decode(_framed(2, body))) == {"customer": {"id": "c-1"}, "cents": 5}
    assert d.decode(_framed(2, body[:-1])) is None
    assert d.why_not(_framed(2, body + b"x")) == "payload does not decode with schema 2"
    assert d.why_not(_framed(3, body)) == "schema 3 is not kept"
    assert d.decode(b'{"a": 1}') == '{"a": 1}' and d.decode(b"\xff") is None


def test_a_reference_that_is_not_kept_is_reported():
    kept = {2: KeptSchema(2, "AVRO", json.dumps(ORDER), references=(Reference("t.Customer", "c-value", 1, 1),))}
    reason = Decoder(kept).why_not(_framed(2, b"\x02"))
    assert reason.startswith("schema 2 cannot be used: referenced schema 1")


def test_may_hold_prefilter():
    con = duckdb.connect()
    for sig, body, _ in DECODING_MACROS:
        if sig.startswith("may_hold"):
            con.execute(f"CREATE MACRO {sig} AS {body}")

    def may(b: bytes, text: str) -> bool:
        return con.execute("SELECT may_hold($b, $t)", {"b": b, "t": text}).fetchone()[0]

    assert may(_framed(1, b"\x1acustomer-0042\x02"), "customer-0042")
    assert not may(_framed(1, b"\x1acustomer-0043\x02"), "customer-0042")
    assert may(_framed(1, "\x04été".encode()), "été")  # non-ASCII compared as bytes
    assert may(_framed(1, b"\x54"), "42")  # numbers are stored encoded: always decode
    assert may(_framed(1, b'{"id": "\\u0063-1"}'), "c-1")  # a JSON escape could hide the id


def test_protobuf_kept_as_proto_source_with_an_import_decodes():
    from google.protobuf import descriptor_pool, message_factory, timestamp_pb2

    from pipeline.schemas.proto_source import compile_proto

    common = 'syntax = "proto3";\npackage t;\nmessage Money { int64 cents = 1; string currency = 2; }\n'
    pay = (
        'syntax = "proto3";\npackage t;\nimport "common.proto";\nimport "google/protobuf/timestamp.proto";\n'
        "message Outer { message Payment { string customer_id = 1; t.Money amount = 2; "
        "google.protobuf.Timestamp at = 3; } }\n"
    )
    kept = {
        1: KeptSchema(1, "PROTOBUF", common),
        2: KeptSchema(2, "PROTOBUF", pay, references=(Reference("common.proto", "common", 1, 1),)),
    }
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(compile_proto("common.proto", common, {}))
    pool.Add(compile_proto("pay.proto", pay, {"common.proto": common}))
    msg = message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Outer.Payment"))(customer_id="c-1")
    msg.amount.cents, msg.at.seconds = 5, 1_700_000_000
    data = _framed(2, bytes([4, 0, 0]) + msg.SerializeToString())  # message indexes [0, 0]: Outer.Payment
    assert json.loads(Decoder(kept).decode(data)) == {
        "customer_id": "c-1",
        "amount": {"cents": "5", "currency": ""},
        "at": "2023-11-14T22:13:20Z",
    }
    bad = {3: KeptSchema(3, "PROTOBUF", "syntax = nonsense")}
    assert Decoder(bad).why_not(_framed(3, b"\x00")).startswith("schema 3 cannot be used: protoc could not compile")
