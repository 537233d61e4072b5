"""``replay --where``: a SQL predicate over the rows a replay reads, meaning what it means in ``kbak query``.

Only a replay with ``--where`` loads the SQL engine (DuckDB, through ``pipeline.query.engine.connect``,
with ``kbak query``'s macros and views); every other replay filters with ``masks.py`` alone.
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from pipeline.core.errors import KbakError, first_line
from pipeline.core.schema import RECORD_SCHEMA

# In --where, key and value read as text (as_text: UTF-8, other bytes as \xNN escapes), so the issue's
# `value LIKE '%customer-42%'` works; the raw bytes are key_bytes / value_bytes.
_ROWS = "_kbak_replay_rows"
_SCOPE = "_kbak_replay_scope"
_ROW = "_kbak_row"
_SCOPE_SQL = (
    f'CREATE TEMP VIEW {_SCOPE} AS SELECT topic, "partition", "offset", "timestamp", timestamp_type, '
    'as_text("key") AS "key", as_text("value") AS "value", headers, "date", source_cluster, ingested_at, '
    f'"key" AS key_bytes, "value" AS value_bytes, {_ROW} FROM {_ROWS}'
)
MEMORY_LIMIT = "128MB"
THREADS = 1  # the predicate runs on the reading thread, one file's rows at a time


class WhereFilter:
    """``--where``: a predicate of the SQL engine (DuckDB, with ``kbak query``'s macros and views),
    evaluated over each file's rows as they are read. Loaded only when a replay has one."""

    def __init__(self, lake, version: int, where: str) -> None:
        import duckdb

        from pipeline.query.engine import connect

        self.duckdb, self.where = duckdb, where
        self.con = connect(lake, as_of=version, audit=False)  # replay logs its own access
        self.con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        self.con.execute(f"SET threads = {THREADS}")
        self._register(RECORD_SCHEMA.empty_table())
        self.con.execute(_SCOPE_SQL)
        self._check()

    def _register(self, table: pa.Table) -> None:
        ids = pa.array(range(table.num_rows), pa.int64())
        self.con.register(_ROWS, table.append_column(_ROW, ids))

    def _check(self) -> None:
        duckdb = self.duckdb
        try:
            self.con.execute(f"EXPLAIN SELECT 1 FROM {_SCOPE} WHERE ({self.where})")
        except duckdb.ParserException as exc:
            raise KbakError(f"--where is not valid SQL: {first_line(exc)}") from None
        except duckdb.BinderException as exc:
            detail = first_line(exc)
            if "not found" in detail or "does not have a column" in detail:
                raise KbakError(f"--where names an unknown column: {detail}") from None
            if "decode(VARCHAR)" in detail:  # a kbak query macro given the text column
                detail += " (in --where key and value are text: give the macros key_bytes / value_bytes)"
            raise KbakError(f"--where cannot be evaluated: {detail}") from None
        except duckdb.Error as exc:
            raise KbakError(f"--where cannot be evaluated: {first_line(exc)}") from None

    def keep(self, table: pa.Table, topic: str, day: date) -> pa.Table:
        """The rows of one file (file columns) that the predicate keeps, in file order."""
        n = table.num_rows
        full = pa.table(
            {
                name: pa.repeat(pa.scalar(topic), n)
                if name == "topic"
                else pa.repeat(pa.scalar(day, pa.date32()), n)
                if name == "date"
                else table[name]
                for name in RECORD_SCHEMA.names
            }
        )
        self._register(full)
        try:
            got = self.con.execute(f"SELECT {_ROW} FROM {_SCOPE} WHERE ({self.where}) ORDER BY {_ROW}")
            ids = got.to_arrow_table().column(0)
        except self.duckdb.Error as exc:
            raise KbakError(f"reading the archive failed: {first_line(exc)}") from None
        return table.take(ids)

    def close(self) -> None:
        self.con.close()
