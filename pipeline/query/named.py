"""The ``queries/`` library: plain ``.sql`` files with a header comment, run with bound parameters.

A query file is DuckDB SQL over the ``records`` view and the audit macros (see ``engine.py``),
using ``$name`` prepared parameters. Its header comment is::

    -- First line(s): what the query answers (shown by ``kbak query --list``).
    -- @param customer VARCHAR : the customer id
    -- @param topics VARCHAR[] = payments : topics to search (comma-separated on the command line)

The name is the file name without ``.sql``. Types are DuckDB types (``VARCHAR``, ``BIGINT``,
``DOUBLE``, ``BOOLEAN``, ``DATE``, ``TIMESTAMPTZ``, ... and ``TYPE[]`` lists); values are
converted by DuckDB itself and bound as parameters, never pasted into SQL text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pipeline.core.errors import KbakError, first_line

QUERIES_ENV = "KBAK_QUERIES"
_PARAM = re.compile(
    r"^@param\s+(?P<name>[A-Za-z_]\w*)\s+(?P<type>[A-Za-z][\w ]*?(?:\[\])?)\s*(?:=\s*(?P<default>.*))?$"
)


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # a DuckDB type; ``X[]`` is a list
    default: str | None  # as written in the header; None means required
    help: str

    @property
    def required(self) -> bool:
        return self.default is None

    @property
    def is_list(self) -> bool:
        return self.type.endswith("[]")

    def signature(self) -> str:
        return f"{self.name} {self.type}" + ("" if self.required else f" = {self.default or '(empty)'}")


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    params: tuple[Param, ...]
    sql: str
    path: Path

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


def queries_dir() -> Path:
    """``$KBAK_QUERIES``, else the ``queries/`` directory next to the ``pipeline`` package."""
    env = os.environ.get(QUERIES_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "queries"


def parse_query(path: Path) -> NamedQuery:
    """Read one query file and its header; a malformed header is an error naming the file and line."""
    text = path.read_text()
    description: list[str] = []
    params: list[Param] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break  # the header ends at the first SQL line
        body = stripped[2:].strip()
        if body.startswith("@param"):
            decl, _, help_text = body.partition(" : ")
            m = _PARAM.match(decl.strip())
            if not m:
                raise KbakError(f"{path}:{lineno}: bad @param line, expected '@param NAME TYPE [= DEFAULT] : HELP'")
            params.append(Param(m["name"], m["type"].upper(), m["default"], help_text.strip()))
        elif body and not params:
            description.append(body)
    return NamedQuery(path.stem, " ".join(description), tuple(params), text, path)


def load_queries(directory: Path | str | None = None) -> dict[str, NamedQuery]:
    base = Path(directory) if directory else queries_dir()
    if not base.is_dir():
        raise KbakError(f"no queries directory at {base} (set {QUERIES_ENV} or pass --queries DIR)")
    return {p.stem: parse_query(p) for p in sorted(base.glob("*.sql"))}


def get_query(name: str, directory: Path | str | None = None) -> NamedQuery:
    queries = load_queries(directory)
    if name not in queries:
        known = ", ".join(queries) or "none"
        raise KbakError(f"unknown query {name!r} (named queries: {known})")
    return queries[name]


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``--param name=value`` pairs as a dict; a pair without ``=`` or given twice is an error."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise KbakError(f"--param {pair!r} is not name=value")
        if name in out:
            raise KbakError(f"--param {name} given twice")
        out[name] = value
    return out


def bind(con: duckdb.DuckDBPyConnection, query: NamedQuery, values: Mapping[str, Any]) -> dict[str, Any]:
    """Typed parameter values for ``query``: defaults filled in; missing, extra or bad ones are errors."""
    extra = [k for k in values if query.param(k) is None]
    if extra:
        declared = ", ".join(p.name for p in query.params) or "none"
        raise KbakError(f"query {query.name} has no parameter {extra[0]!r} (its parameters: {declared})")
    missing = [p.name for p in query.params if p.required and p.name not in values]
    if missing:
        raise KbakError(f"query {query.name} needs parameter {missing[0]!r} (--param {missing[0]}=...)")
    bound: dict[str, Any] = {}
    for p in query.params:
        raw = values[p.name] if p.name in values else (None if (p.default or "").upper() == "NULL" else p.default)
        bound[p.name] = _convert(con, p, raw, query.name)
    return bound


def check_sql_params(sql: str, values: Mapping[str, Any]) -> None:
    """For ad-hoc SQL: every ``$name`` needs a value and every value a ``$name``."""
    wanted: set[str] = set()
    for stmt in split_statements(sql):
        wanted |= set(stmt.named_parameters)
    extra = sorted(set(values) - wanted)
    if extra:
        raise KbakError(f"--param {extra[0]} is not used by the SQL (it uses: {', '.join(sorted(wanted)) or 'none'})")
    missing = sorted(wanted - set(values))
    if missing:
        raise KbakError(f"the SQL needs parameter {missing[0]!r} (--param {missing[0]}=...)")


def split_statements(sql: str) -> list:
    """The statements of ``sql`` as DuckDB parses them; a syntax error is a one-line KbakError."""
    try:
        stmts = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise KbakError(f"SQL error: {first_line(exc)}") from None
    if not stmts:
        raise KbakError("the SQL is empty")
    return stmts


def _convert(con: duckdb.DuckDBPyConnection, p: Param, raw: Any, query: str) -> Any:
    if p.is_list and isinstance(raw, str):
        text = raw.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        raw = [part.strip() for part in text.split(",") if part.strip()]
    if raw is None:
        return None
    try:
        return con.execute(f"SELECT CAST($v AS {p.type})", {"v": raw}).fetchone()[0]
    except duckdb.Error as exc:
        raise KbakError(
            f"query {query}: parameter {p.name} = {raw!r} is not a valid {p.type}: {first_line(exc)}"
        ) from None


def run_query(
    con: duckdb.DuckDBPyConnection,
    query: NamedQuery | str,
    params: Mapping[str, Any] | None = None,
    directory: Path | str | None = None,
) -> duckdb.DuckDBPyConnection:
    """Run a named query on a ``connect()`` connection; fetch with ``.to_arrow_table()``, ``.df()``, ``.pl()``."""
    q = get_query(query, directory) if isinstance(query, str) else query
    bound = bind(con, q, params or {})
    try:
        return con.execute(q.sql, bound or None)
    except duckdb.Error as exc:
        raise KbakError(f"query {q.name}: {first_line(exc)}") from None
