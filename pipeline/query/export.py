"""Writing a query's result: a readable table on a terminal, or csv/json/jsonl/parquet streamed by DuckDB.

File formats go through DuckDB's ``COPY (query) TO``, which streams the result to the file in
chunks, so an export larger than memory works. To stdout, DuckDB writes into a pipe kbak owns and
a thread copies the pipe to this process's own stdout stream: ``COPY ... TO '/dev/stdout'`` would
open the path anew and truncate it, destroying a file the shell opened for ``>>`` (or a header an
enclosing ``{ echo header; kbak ...; } > f`` wrote first). In text formats (table, csv, json, jsonl) bytes
(Kafka keys, values, header values) appear as DuckDB renders BLOBs: printable ASCII other than
the quote and backslash as is, every other byte as ``\\xNN``; ``CAST(text AS BLOB)`` turns that back
into the exact bytes. Parquet keeps bytes as bytes. Use the ``as_text`` macro for UTF-8 text columns.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb

from pipeline.core.errors import KbakError, first_line
from pipeline.query.engine import sql_literal
from pipeline.query.named import split_statements

_SHOWS = re.compile(r"\s*(describe|show|summarize|explain|pragma)\b", re.IGNORECASE)  # parsed as SELECTs
FORMATS = ("table", "csv", "json", "jsonl", "parquet")
_COPY_OPTIONS = {
    "csv": "FORMAT csv, HEADER true",
    "json": "FORMAT json, ARRAY true",
    "jsonl": "FORMAT json",
    "parquet": "FORMAT parquet, COMPRESSION zstd",
}


def write_result(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Mapping[str, Any] | None = None,
    fmt: str = "table",
    output: Path | str | None = None,
    max_rows: int = 100,
) -> int | None:
    """Run ``sql`` (the last statement's rows are the result) and write them; returns rows written.

    For ``table``, at most ``max_rows`` rows are shown and the count is only known when the result is
    smaller (None otherwise).
    """
    if fmt not in FORMATS:
        raise KbakError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise KbakError("--format parquet is binary: give --output FILE or redirect stdout to a file")
    query = result_query(con, sql, params)
    if fmt == "table":
        return _write_table(con, query, params, output, max_rows)
    if output is None:
        return _copy_to_stdout(con, query, params, fmt)
    return _copy_to_file(con, query, params, fmt, Path(output))


def _copy_to_file(con: duckdb.DuckDBPyConnection, query: str, params, fmt: str, target: Path) -> int | None:
    """``COPY`` into a new file next to ``target``, renamed over it only when complete.

    A failed or interrupted export leaves ``target`` as it was and nothing else behind (DuckDB's own
    ``tmp_<name>`` survives an interrupt, 200 MB of it after a few seconds).
    """
    if target.exists() and not target.is_file():  # a device or pipe (-o /dev/stdout): written through
        return _copy(con, query, params, fmt, str(target))  # (resolved, a pipe's name is no path)
    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.kbak-partial-{os.getpid()}")
    try:
        rows = _copy(con, query, params, fmt, str(partial))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return rows


def _copy(con: duckdb.DuckDBPyConnection, query: str, params, fmt: str, target: str) -> int | None:
    copy = f"COPY ({query}) TO {sql_literal(target)} ({_COPY_OPTIONS[fmt]})"
    try:
        row = con.execute(copy, _used(params, query)).fetchone()
    except duckdb.Error as exc:
        raise KbakError(f"SQL error: {first_line(exc)}") from None
    return int(row[0]) if row else None


def _copy_to_stdout(con: duckdb.DuckDBPyConnection, query: str, params, fmt: str) -> int | None:
    """``COPY`` into a pipe (``/dev/fd/N``: nothing to truncate there), copied to ``sys.stdout``'s stream."""
    sys.stdout.flush()
    out = sys.stdout.buffer
    read_fd, write_fd = os.pipe()
    broken: list[BaseException] = []

    def pump() -> None:
        with os.fdopen(read_fd, "rb", buffering=0) as src:
            try:
                while chunk := src.read(1 << 16):
                    out.write(chunk)
                out.flush()
            except BrokenPipeError as exc:  # the reader went away (``| head``): let DuckDB's writes fail
                broken.append(exc)

    thread = threading.Thread(target=pump, name="kbak-query-stdout", daemon=True)
    thread.start()
    try:
        rows = _copy(con, query, params, fmt, f"/dev/fd/{write_fd}")
    except KbakError:
        if broken:
            return None  # the consumer of stdout stopped reading: not an error of the query
        raise
    finally:
        os.close(write_fd)
        thread.join()
    return rows


def result_query(con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | None = None) -> str:
    """Run every statement but the last (SET, CREATE MACRO, ...) and return the last as a query.

    A last statement that is not a SELECT (DESCRIBE, SHOW, SUMMARIZE, PRAGMA) is run now and its
    (small) result kept in a temporary table, so every statement can be exported the same way.
    """
    stmts = split_statements(sql)
    try:
        for stmt in stmts[:-1]:
            con.execute(stmt.query, _used(params, stmt.query))
        last = stmts[-1]
        if last.type == duckdb.StatementType.SELECT and not _SHOWS.match(last.query):
            return last.query.strip().rstrip(";")
        table = con.execute(last.query, _used(params, last.query)).to_arrow_table()
    except duckdb.Error as exc:
        raise KbakError(f"SQL error: {first_line(exc)}") from None
    con.register("_kbak_statement_result", table)
    return "SELECT * FROM _kbak_statement_result"


def _write_table(con, query: str, params, output, max_rows: int) -> int | None:
    try:
        head = con.execute(f"SELECT * FROM ({query}) LIMIT {int(max_rows) + 1}", _used(params, query))
        table = head.to_arrow_table()
    except duckdb.Error as exc:
        raise KbakError(f"SQL error: {first_line(exc)}") from None
    more = table.num_rows > max_rows
    shown = table.slice(0, max_rows)
    width = shutil.get_terminal_size((160, 24)).columns if output is None else 400
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        con.from_arrow(shown).show(max_width=width, max_rows=max_rows + 1)
    text = buf.getvalue()
    if more:
        text += f"(first {max_rows} rows shown; use --format csv|jsonl|parquet --output FILE for all rows)\n"
    if output is None:
        sys.stdout.write(text)
    else:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text)
    return None if more else shown.num_rows


def _used(params: Mapping[str, Any] | None, query: str) -> dict[str, Any] | None:
    """The parameters one statement uses (DuckDB rejects values a statement does not name)."""
    if not params:
        return None
    names = set()
    for stmt in duckdb.extract_statements(query):
        names |= set(stmt.named_parameters)
    return {k: v for k, v in params.items() if k in names} or None
