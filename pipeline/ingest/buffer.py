"""Consumed records waiting for the next flush, with the sizes that decide when to flush."""

from __future__ import annotations

import time

import pyarrow as pa

from pipeline.ingest.batch import without_partitions


class Buffer:
    """Arrow tables in consume order; ``since`` is when the oldest unflushed record arrived."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.rows = 0
        self.bytes = 0
        self.since = time.monotonic()

    def add(self, table: pa.Table) -> None:
        if not self.rows:
            self.since = time.monotonic()
        self.tables.append(table)
        self.rows += table.num_rows
        self.bytes += table.nbytes

    def due(self, max_rows: int, max_bytes: int, max_seconds: float) -> bool:
        if not self.rows:
            return False
        return self.rows >= max_rows or self.bytes >= max_bytes or time.monotonic() - self.since >= max_seconds

    def take(self) -> pa.Table | None:
        """Everything buffered, as one table (None when empty); the buffer starts over."""
        if not self.rows:
            return None
        table = pa.concat_tables(self.tables)
        self.tables, self.rows, self.bytes = [], 0, 0
        self.since = time.monotonic()
        return table

    def drop(self, tps: set[tuple[str, int]]) -> None:
        """Forget the rows of these partitions (lost, or re-positioned by another writer)."""
        if not self.tables:
            return
        kept = [without_partitions(t, tps) for t in self.tables]
        self.tables = [t for t in kept if t.num_rows]
        self.rows = sum(t.num_rows for t in self.tables)
        self.bytes = sum(t.nbytes for t in self.tables)
