"""The SQL engine over the archive: a DuckDB connection with a ``records`` view and audit macros.

Shared by ``kbak query``, ``kbak replay --where`` and the notebooks, so one predicate means the
same thing everywhere. Three readers can back ``records``:

- ``delta_scan`` (default for tables of many files): DuckDB's own delta extension, loaded from the
  ``duckdb-extension-delta`` wheel (and ``-httpfs`` for S3) that match the pinned duckdb release, so it
  works with no internet access. Never installed from the network. It skips files by the statistics
  in the log, which pays off when there are thousands of them.
- ``parquet`` (default for tables of at most ``PARQUET_READER_MAX_FILES`` live files, such as a small
  or compacted archive, and for older versions that erasure or vacuum touched): DuckDB's built-in
  Parquet reader over the version's file list, as deltalake reads it from the log. No extension to
  load: DuckDB checks the signature of the 82 MB delta extension on every ``LOAD`` (~0.1 s), more than
  reading a few hundred footers. Only for tables a plain Parquet reader reads right (reader protocol 1:
  no deletion vectors, no column mapping); ``delta_scan`` otherwise.
- ``arrow``: deltalake's pyarrow dataset registered in DuckDB; the fallback when the extension
  cannot load (another duckdb build, a platform without the wheel), or on request.

All see the table at one pinned version: the one ``as_of`` names, or the latest when opening.
The session time zone is UTC, so timestamps in parameters and output mean the same everywhere.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import duckdb

from pipeline.core.access_log import log_access
from pipeline.core.errors import KbakError, first_line
from pipeline.core.readset import version_files
from pipeline.core.storage import Lake
from pipeline.core.table import open_table
from pipeline.query import decoding

if TYPE_CHECKING:
    from deltalake import DeltaTable

log = logging.getLogger("kbak.engine")

READERS = ("delta_scan", "parquet", "arrow")
READER_ENV = "KBAK_SQL_READER"
# Up to this many live files, the parquet reader is the default (docs/query.md, "Engine"): loading the delta
# extension costs more than opening the footers of the files a partition filter does not prune, even when
# the log's statistics would have skipped them all (measured at 270 files; per-file costs put the break-even
# near 650). On S3 each such file costs requests, so fewer.
PARQUET_READER_MAX_FILES = 512
PARQUET_READER_MAX_FILES_S3 = 16

# The audit macros, created in every connection (and printed by ``kbak query --setup-sql`` for any
# DuckDB client). Kafka keys, values and header values are bytes: these turn them into text.
MACROS: list[tuple[str, str, str]] = [
    (
        "as_text(b)",
        "CASE WHEN b IS NULL THEN NULL ELSE coalesce(try(decode(b)), CAST(b AS VARCHAR)) END",
        "Bytes as UTF-8 text; bytes that are not UTF-8 come out escaped (\\xNN), NULL stays NULL.",
    ),
    (
        "json_field(b, path)",
        # try(): a value that is not JSON gives NULL instead of failing the query.
        "try(json_extract_string(as_text(b), CASE WHEN starts_with(path, '$') THEN path ELSE '$.' || path END))",
        "A field of a JSON value as text ('customer_id', 'payer.id' or a '$...' JSON path); NULL when "
        "the value is not JSON or has no such field.",
    ),
    (
        "header_text(headers, name)",
        "as_text(list_filter(headers, lambda h: h.key = name)[1].value)",
        "The first value of the header called name, as text (NULL when absent or null-valued).",
    ),
    (
        "header_names(headers)",
        "list_transform(headers, lambda h: h.key)",
        "The record's header names, in order, duplicates kept.",
    ),
    (
        "record_bytes(key, value, headers)",
        "coalesce(octet_length(key), 0) + coalesce(octet_length(value), 0) + coalesce(list_sum(list_transform("
        "headers, lambda h: octet_length(encode(h.key)) + coalesce(octet_length(h.value), 0))), 0)",
        "Payload size of a record: key + value + header keys and values, in bytes.",
    ),
]


@dataclass(frozen=True)
class TableState:
    """What a connection reads: the lake, the pinned version, the reader that serves ``records``."""

    lake: str
    version: int
    reader: str
    as_of: str | None


def connect(
    lake: Lake,
    as_of: int | str | None = None,
    reader: str | None = None,
    *,
    audit: bool = True,
    decode: bool = False,
    only_for: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose ``records`` view is the archive (as of a version or time).

    The connection also has the audit macros (``MACROS``), a one-row ``kbak_table`` view saying
    which lake, version and reader it uses, the ``kbak_recorded_gaps`` view, and the decoding functions
    over the kept schemas (``decoding.py``; ``decode`` makes the named queries print decoded payloads).
    With an access log configured (``KBAK_ACCESS_LOG``), the connection is recorded there;
    ``audit=False`` is for callers that record a richer entry.

    ``only_for``: the SQL the connection is for, when the caller knows it (``kbak query``). What that
    SQL cannot use is left out: ``kbak_recorded_gaps`` unless it names it (``uses_recorded_gaps``: making
    the view lists every custody manifest, a cost that grows with every version), the Python decoding
    functions unless it can call them (``decoding.uses_decoding``: ~40 ms of start-up).
    """
    gaps = only_for is None or uses_recorded_gaps(only_for)
    functions = only_for is None or decoding.uses_decoding(only_for, decode)
    asked = reader or os.environ.get(READER_ENV)
    if asked is not None and asked not in READERS:
        raise KbakError(f"unknown SQL reader {asked!r}: use one of {', '.join(READERS)}")
    dt = open_table(lake, as_of)
    version = dt.version()
    # An older version after erasure or vacuum: read its files as kbak's readset says (core/readset.py).
    files = version_files(lake, dt) if as_of is not None else None
    uris = [file_uri(lake, f) for f in files.files] if files is not None else None
    chosen = asked or default_reader(dt, uris, PARQUET_READER_MAX_FILES_S3 if lake.is_s3 else PARQUET_READER_MAX_FILES)
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute("SET TimeZone = 'UTC'")
    if chosen != "arrow":
        try:
            if chosen == "parquet":
                stmts = _parquet_statements(lake, dt.file_uris() if uris is None else uris)
            else:
                stmts = _delta_scan_statements(lake, version, secrets=True)
                if uris is not None:  # the readset's files, not the log's
                    stmts[-1] = parquet_view_statement(uris)
            for stmt in stmts[:-1]:  # the extensions and the S3 secret
                con.execute(stmt)
            if chosen == "delta_scan" and uris is None:
                con.execute(stmts[-1])  # a log delta_scan cannot bind may still open through deltalake
        except (duckdb.Error, KbakError) as exc:
            if asked:  # asked for explicitly: say why it cannot be used
                raise KbakError(f"the {chosen} reader is unavailable: {first_line(exc)}") from None
            log.warning("%s reader unavailable (%s); using deltalake's Arrow dataset", chosen, first_line(exc))
            con.close()
            return connect(lake, as_of, reader="arrow", audit=audit, decode=decode, only_for=only_for)
        if chosen == "parquet" or uris is not None:
            try:
                con.execute(stmts[-1])
            except duckdb.Error as exc:  # the files themselves (missing, unreadable): the arrow reader reads the same
                raise KbakError(f"cannot read the data files of {lake.uri}: {first_line(exc)}") from None
    else:
        dataset = dt.to_pyarrow_dataset() if files is None else files_dataset(lake, files.files)
        con.register("_kbak_records_dataset", dataset)
        cols = ", ".join(_ident(n) for n, _t in _DUCKDB_TYPES)
        con.execute(f"CREATE VIEW records AS SELECT {cols} FROM _kbak_records_dataset")
    for stmt in macro_statements():
        con.execute(stmt)
    if gaps:
        _create_recorded_gaps(con, lake, version, chosen)
    decoding.register(con, lake, decode, functions=functions)
    state = TableState(lake.uri, version, chosen, None if as_of is None else str(as_of))
    con.execute(
        "CREATE VIEW kbak_table AS SELECT * FROM (VALUES ("
        + ", ".join(sql_literal(v) for v in (state.lake, state.version, state.reader, state.as_of))
        + ")) AS t(lake, version, reader, as_of)"
    )
    if audit:
        log_access("connect", lake, table_version=version, as_of=state.as_of)
    return con


def default_reader(dt: DeltaTable, uris: list[str] | None = None, max_files: int = PARQUET_READER_MAX_FILES) -> str:
    """``parquet`` for a table of at most ``max_files`` live files (or the readset's ``uris`` of an older
    version) that a plain Parquet reader reads right, else ``delta_scan``."""
    protocol = dt.protocol()
    if protocol.min_reader_version > 1 or protocol.reader_features:
        return "delta_scan"  # deletion vectors, column mapping...: only a Delta reader reads those right
    if uris is not None or len(dt.file_uris()) <= max_files:
        return "parquet"
    return "delta_scan"


def connect_files(lake: Lake, files: list[str], filename: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose ``records`` view is exactly these data files (lake-relative), with the macros.

    For kbak's own scans of files outside one version (erasure reads every file any version references).
    """
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute("SET TimeZone = 'UTC'")
    for stmt in _parquet_statements(lake, [file_uri(lake, f) for f in files], filename=filename):
        con.execute(stmt)
    for stmt in macro_statements():
        con.execute(stmt)
    decoding.register(con, lake)
    return con


_GAP = '{"topic":"VARCHAR","partition":"INTEGER","%s":"BIGINT","%s":"BIGINT","reason":"VARCHAR"}'


def recorded_gaps_view(lake: Lake, version: int) -> str:
    """``kbak_recorded_gaps``: offset holes the custody chain explains (read only when a query uses it).

    Ingest's ``gaps`` (``deleted_before_archive``) of versions up to ``version``, and erasure/retention's
    ``removed_offsets`` (``erased`` / ``retention``) of every version: kbak's readers leave those records
    out at every version. From the sealed manifests; the ``offset_gaps`` query's reasons.
    """
    glob = sql_literal(file_uri(lake, "_kbak/custody/*.json"))
    ingest, removed = _GAP % ("first_missing", "last_missing"), _GAP % ("first_offset", "last_offset")
    return (
        "CREATE OR REPLACE VIEW kbak_recorded_gaps AS "
        f"WITH v AS (SELECT content::JSON AS j FROM read_text({glob})) "
        f"SELECT unnest(from_json(j->'$.body.gaps', '[{ingest}]'), recursive := true) FROM v "
        f"WHERE (j->>'version')::BIGINT <= {int(version)} UNION ALL "
        f"SELECT unnest(from_json(j->'$.body.removed_offsets', '[{removed}]'), recursive := true) FROM v"
    )


def uses_recorded_gaps(sql: str) -> bool:
    """Whether SQL can read ``kbak_recorded_gaps`` (it names it: no other view or macro of ours does)."""
    return "kbak_recorded_gaps" in sql.lower()


def _create_recorded_gaps(con: duckdb.DuckDBPyConnection, lake: Lake, version: int, reader: str) -> None:
    try:
        if lake.is_s3 and reader == "arrow":  # the other readers have loaded httpfs
            con.execute(f"LOAD {sql_literal(str(extension_path('httpfs')))}")
            con.execute(_s3_secret(lake, True))
        con.execute(recorded_gaps_view(lake, version))
    except (duckdb.Error, KbakError) as exc:
        log.warning("no kbak_recorded_gaps view (%s): offset_gaps cannot give reasons", first_line(exc))
        empty = ", ".join(f"NULL::{t} AS {_ident(n)}" for n, t in _GAP_COLUMNS)
        con.execute(f"CREATE OR REPLACE VIEW kbak_recorded_gaps AS SELECT {empty} WHERE false")


_GAP_COLUMNS = [("topic", "VARCHAR"), ("partition", "INTEGER"), ("first_missing", "BIGINT"),
                ("last_missing", "BIGINT"), ("reason", "VARCHAR")]  # fmt: skip


def table_state(con: duckdb.DuckDBPyConnection) -> TableState:
    """The lake, version and reader behind a connection made by ``connect``."""
    lake, version, reader, as_of = con.execute("SELECT * FROM kbak_table").fetchone()
    return TableState(lake, int(version), reader, as_of)


def macro_statements() -> list[str]:
    return [f"CREATE OR REPLACE MACRO {sig} AS {body}" for sig, body, _doc in MACROS]


def setup_sql(lake: Lake, as_of: int | str | None = None) -> str:
    """SQL that gives any DuckDB 1.5.5 client (CLI, DBeaver, ...) the same ``records`` view and macros.

    S3 credentials are left as placeholders: they are the reader's to fill in.
    """
    version = open_table(lake, as_of).version() if as_of is not None else None
    stmts = _delta_scan_statements(lake, version, secrets=False) + macro_statements() + decoding.setup_statements()
    return ";\n".join(stmts) + ";\n"


def extension_path(name: str) -> Path:
    """The extension file shipped in the ``duckdb-extension-<name>`` wheel for this duckdb release."""
    import importlib

    try:
        module = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError:
        raise KbakError(f"the duckdb-extension-{name} wheel is not installed") from None
    path = Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.exists():
        raise KbakError(f"duckdb-extension-{name} has no build for duckdb {duckdb.__version__} ({path})")
    return path


def _delta_scan_statements(lake: Lake, version: int | None, secrets: bool) -> list[str]:
    stmts = [f"LOAD {sql_literal(str(extension_path('delta')))}"]
    if lake.is_s3:
        stmts.insert(0, f"LOAD {sql_literal(str(extension_path('httpfs')))}")
        stmts.append(_s3_secret(lake, secrets))
    pinned = "" if version is None else f", version => {int(version)}"
    stmts.append(f"CREATE OR REPLACE VIEW records AS SELECT * FROM delta_scan({sql_literal(lake.uri)}{pinned})")
    return stmts


def _parquet_statements(lake: Lake, uris: list[str], filename: bool = False) -> list[str]:
    stmts = []
    if lake.is_s3:
        stmts = [f"LOAD {sql_literal(str(extension_path('httpfs')))}", _s3_secret(lake, True)]
    return [*stmts, parquet_view_statement(uris, filename=filename)]


def parquet_view_statement(uris: list[str], view: str = "records", filename: bool = False) -> str:
    """``records`` over an explicit list of data files (as ``file_uri`` gives them), in the table's columns.

    The ``topic`` and ``date`` partition values come from the hive-style paths kbak writes (a Kafka topic
    name is ``[a-zA-Z0-9._-]``: nothing in it is escaped). ``filename``: add a ``filename`` column.
    """
    types = _DUCKDB_TYPES + ([("filename", "VARCHAR")] if filename else [])
    if not uris:
        empty = ", ".join(f"NULL::{t} AS {_ident(n)}" for n, t in types)
        return f"CREATE OR REPLACE VIEW {view} AS SELECT {empty} WHERE false"
    listed = "[" + ", ".join(sql_literal(u) for u in uris) + "]"
    cols = ", ".join(_ident(n) for n, _t in types)
    return (
        f"CREATE OR REPLACE VIEW {view} AS SELECT {cols} FROM read_parquet({listed}, hive_partitioning = true, "
        f"hive_types = {{'topic': VARCHAR, 'date': DATE}}, filename = {str(filename).lower()})"
    )


def files_dataset(lake: Lake, files: list[str]):
    """The arrow reader's counterpart of ``parquet_view_statement``: a pyarrow dataset over those files."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from pipeline.core.schema import RECORD_SCHEMA

    if not files:
        return RECORD_SCHEMA.empty_table()
    part = ds.partitioning(pa.schema([RECORD_SCHEMA.field("topic"), RECORD_SCHEMA.field("date")]), flavor="hive")
    paths = [lake.path(f) for f in files]
    return ds.dataset(paths, filesystem=lake.fs, format="parquet", partitioning=part, partition_base_dir=lake.root)


def file_uri(lake: Lake, rel: str) -> str:
    """A data file as DuckDB addresses it (an s3:// URI or a local path)."""
    return f"{lake.uri}/{rel}" if lake.is_s3 else lake.path(rel)


_DUCKDB_TYPES = [
    ("topic", "VARCHAR"),
    ("partition", "INTEGER"),
    ("offset", "BIGINT"),
    ("timestamp", "TIMESTAMPTZ"),
    ("timestamp_type", "VARCHAR"),
    ("key", "BLOB"),
    ("value", "BLOB"),
    ("headers", "STRUCT(key VARCHAR, value BLOB)[]"),
    ("date", "DATE"),
    ("source_cluster", "VARCHAR"),
    ("ingested_at", "TIMESTAMPTZ"),
]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _s3_secret(lake: Lake, with_credentials: bool) -> str:
    s3 = lake.s3
    opts = {"TYPE": "s3", "REGION": sql_literal(s3.region or "us-east-1"), "SCOPE": sql_literal(f"s3://{lake.bucket}")}
    if with_credentials:
        if s3.access_key_id:
            opts["KEY_ID"] = sql_literal(s3.access_key_id)
            opts["SECRET"] = sql_literal(s3.secret_access_key or "")
        if s3.session_token:
            opts["SESSION_TOKEN"] = sql_literal(s3.session_token)
    else:
        opts["KEY_ID"] = sql_literal("<AWS_ACCESS_KEY_ID>")
        opts["SECRET"] = sql_literal("<AWS_SECRET_ACCESS_KEY>")
    if s3.endpoint:
        parsed = urlparse(s3.endpoint if "://" in s3.endpoint else f"https://{s3.endpoint}")
        opts["ENDPOINT"] = sql_literal(parsed.netloc)
        opts["USE_SSL"] = "false" if parsed.scheme == "http" else "true"
        opts["URL_STYLE"] = sql_literal("path")  # custom endpoints (MinIO, moto, Ceph) rarely do virtual hosts
    body = ", ".join(f"{k} {v}" for k, v in opts.items())
    return f"CREATE OR REPLACE SECRET kbak_lake ({body})"


def sql_literal(value) -> str:
    """A value as a SQL literal (NULL, an integer, or a quoted string), for statements DuckDB cannot bind."""
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"
