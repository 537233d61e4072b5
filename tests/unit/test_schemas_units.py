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
