"""Decoding in SQL: the kept schemas (``pipeline.schemas``) behind DuckDB functions and macros.

``register(con, lake, decode)`` gives a connection:

- ``is_framed(b)``: the bytes are in the schema registry wire format (magic byte 0 + 4-byte id).
- ``schema_id(b)``: that id (NULL for other payloads).
- ``decoded(b)``: the payload as JSON text, whatever its format (plain JSON, Avro, Protobuf, JSON
  Schema); NULL for bytes that do not decode (unknown schema, corrupt payload, not JSON).
- ``field(b, path)``: like ``json_field`` on any of them.
- ``undecodable_reason(b)``: why a framed payload does not decode (NULL when it does).
- ``shown(b)``: what the named queries print for a payload: ``as_text(b)``, or with ``decode`` (the
  CLI's ``--decode``) the decoded JSON where there is one.
- a ``kbak_schemas`` table of the kept schemas (id, schema_type, subject, version, source).

The Python functions are vectorised (DuckDB hands them Arrow batches) and the macros call them only
for framed payloads, after the other conditions of a query's WHERE have cut the rows down: plain
JSON stays on DuckDB's own JSON functions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import duckdb

from pipeline.core.storage import Lake
from pipeline.schemas.decode import Decoder
from pipeline.schemas.store import SchemaStore

if TYPE_CHECKING:
    import pyarrow as pa

# (signature, body, doc): like engine.MACROS, but needing this connection's Python functions.
DECODING_MACROS: list[tuple[str, str, str]] = [
    (
        "is_framed(b)",
        "coalesce(octet_length(b) >= 5 AND b < '\\x01'::BLOB, false)",
        "Whether the bytes are in the schema registry wire format (magic byte 0, 4-byte schema id).",
    ),
    (
        "schema_id(b)",
        "CASE WHEN is_framed(b) THEN CAST(('0x' || hex(b[2:5])) AS BIGINT) END",
        "The schema id of a wire-format payload (NULL for other payloads).",
    ),
    (
        "decoded(b)",
        "CASE WHEN b IS NULL THEN NULL WHEN is_framed(b) THEN kbak_decode(b) "
        "WHEN try(json_valid(as_text(b))) THEN as_text(b) END",
        "The payload as JSON text (JSON, Avro, Protobuf or JSON Schema, decoded with the kept schemas); "
        "NULL when it does not decode.",
    ),
    (
        "field(b, path)",
        "CASE WHEN is_framed(b) THEN try(json_extract_string(kbak_decode(b), "
        "CASE WHEN starts_with(path, '$') THEN path ELSE '$.' || path END)) ELSE json_field(b, path) END",
        "Like json_field, on any payload decoded() reads.",
    ),
    (
        "may_hold(b, text)",
        "regexp_full_match(text, '[-+0-9.eE]+') OR contains(CAST(b AS VARCHAR), CAST(encode(text) AS VARCHAR)) "
        "OR contains(CAST(b AS VARCHAR), '\\x5C')",
        "A cheap test before decoding: false only when the payload cannot hold text as a string value "
        "(its bytes do not contain it and there is no escape that could hide it); numbers always pass.",
    ),
    (
        "undecodable_reason(b)",
        "CASE WHEN is_framed(b) THEN kbak_decode_error(b) END",
        "Why a wire-format payload does not decode (schema not kept, corrupt payload); NULL when it does.",
    ),
]

_SHOWN_RAW = ("shown(b)", "as_text(b)", "A payload as the named queries print it.")
_SHOWN_DECODED = (
    "shown(b)",
    "CASE WHEN is_framed(b) THEN coalesce(kbak_decode(b), as_text(b)) ELSE as_text(b) END",
    "A payload as the named queries print it: decoded JSON where the kept schemas can decode it.",
)


# For DuckDB clients without kbak's Python (``kbak query --setup-sql``): the same macros, so the
# named queries run there too, but wire-format payloads do not decode (NULL, with the reason).
_FOREIGN_FUNCTIONS = [
    ("kbak_decode(b)", "CAST(NULL AS VARCHAR)"),
    ("kbak_decode_error(b)", "'decoding schema registry payloads needs kbak (kbak query)'"),
]


def setup_statements() -> list[str]:
    """The decoding macros for any DuckDB client; only kbak's own connections actually decode."""
    macros = [*_FOREIGN_FUNCTIONS, *[(sig, body) for sig, body, _doc in DECODING_MACROS], _SHOWN_RAW[:2]]
    return [f"CREATE OR REPLACE MACRO {sig} AS {body}" for sig, body in macros]


def uses_decoding(sql: str, decode: bool = False) -> bool:
    """Whether SQL can reach the Python decoder: it names a macro that calls it, or the functions themselves
    (``shown`` only with ``decode``: otherwise it prints the bytes as text).

    Conservative (``json_field`` counts, as it contains ``field``): a false match costs only the time
    ``functions=False`` saves in ``register``.
    """
    lowered = sql.lower()
    names = (*_DECODER_CALLERS, "shown") if decode else _DECODER_CALLERS
    return any(name in lowered for name in names)


_DECODER_CALLERS = ("kbak_decode", *(sig.split("(")[0] for sig, body, _doc in DECODING_MACROS if "kbak_decode" in body))


def register(
    con: duckdb.DuckDBPyConnection, lake: Lake, decode: bool = False, functions: bool = True
) -> Decoder | None:
    """Create the decoding functions, macros and the ``kbak_schemas`` table on ``con``.

    ``functions=False`` (for SQL that ``uses_decoding`` says cannot call them) leaves out the Python
    functions and the macros that call them: DuckDB's ``create_function`` imports numpy, ~40 ms of a
    small query's start.
    """
    store = SchemaStore(lake)
    schemas = store.load_all()
    decoder = Decoder(schemas) if functions else None
    if decoder is not None:
        blob, text = duckdb.sqltype("BLOB"), duckdb.sqltype("VARCHAR")
        for name, fn in (("kbak_decode", decoder.decode_array), ("kbak_decode_error", decoder.reason_array)):
            con.create_function(
                name, _kept_alive(fn), [blob], text, type="arrow", null_handling="special", side_effects=False
            )
    for sig, body, _doc in [*DECODING_MACROS, _SHOWN_DECODED if decode else _SHOWN_RAW]:
        if functions or "kbak_decode" not in body:
            con.execute(f"CREATE OR REPLACE MACRO {sig} AS {body}")
    # A table filled with parameters, not a registered Arrow table: that loads pyarrow.dataset (~25 ms a query).
    con.execute(
        "CREATE OR REPLACE TABLE kbak_schemas "
        "(id BIGINT, schema_type VARCHAR, subject VARCHAR, version BIGINT, source VARCHAR)"
    )
    rows = [(s.id, s.schema_type, s.subject, s.version, s.source) for s in schemas.values()]
    if rows:
        con.executemany("INSERT INTO kbak_schemas VALUES (?, ?, ?, ?, ?)", rows)
    return decoder


# DuckDB reads an Arrow UDF's strings longer than 12 bytes in place, and can still read them after
# Python dropped the array (duckdb/duckdb#20606: garbage or "Invalid unicode" inside coalesce).
# Holding the last results keeps their buffers alive until DuckDB has copied them on; a chunk is
# consumed by its pipeline long before 128 more chunks are produced.
KEEP_ALIVE_BATCHES = 128


def _kept_alive(fn: Callable[[pa.ChunkedArray], pa.Array]) -> Callable[[pa.ChunkedArray], pa.Array]:
    recent: deque[pa.Array] = deque(maxlen=KEEP_ALIVE_BATCHES)

    def call(column):  # unannotated: DuckDB evaluates a UDF's annotations, and pyarrow is not loaded yet
        result = fn(column)
        recent.append(result)
        return result

    return call
