"""The current version's data files by (topic, date), and reading one of them for a rewrite or removal."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from pipeline.core.errors import KbakError


@dataclass(frozen=True)
class LiveFile:
    """A data file of the current version: its Delta add action (flattened) and where it belongs."""

    add: dict

    @property
    def path(self) -> str:
        return self.add["path"]

    @property
    def size(self) -> int:
        return self.add["size_bytes"]

    @property
    def topic(self) -> str:
        return self.add["partition.topic"]

    @property
    def day(self) -> date:
        return self.add["partition.date"]


@dataclass(frozen=True)
class ReadFile:
    """One data file's bytes, checksum and rows, read once."""

    path: str
    size: int
    sha256: str
    rows: pa.Table


def live_files(dt: DeltaTable) -> dict[tuple[str, date], list[LiveFile]]:
    """The current version's files grouped by (topic, date), each group in the order they were added."""
    groups: dict[tuple[str, date], list[LiveFile]] = {}
    for row in pa.table(dt.get_add_actions(flatten=True)).to_pylist():
        f = LiveFile(row)
        groups.setdefault((f.topic, f.day), []).append(f)
    for files in groups.values():
        files.sort(key=lambda f: (f.add["modification_time"], f.path))
    return dict(sorted(groups.items()))


def topic_pattern(regex: str | None) -> re.Pattern | None:
    """``--topics REGEX`` (matched against the whole topic name, as ingest does); a clear error if invalid."""
    if regex is None:
        return None
    try:
        return re.compile(regex)
    except re.error as exc:
        raise KbakError(f"--topics {regex!r} is not a valid regular expression: {exc}") from None


def parse_day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise KbakError(f"{option} {text!r} is not a date (YYYY-MM-DD)") from None


def read_file(lake, path: str) -> ReadFile:
    """Fetch a data file once: its SHA-256 and its rows (file schema)."""
    try:
        data = lake.read_bytes(path)
    except FileNotFoundError:
        raise KbakError(f"data file {path} is referenced by the table but missing from {lake.uri}") from None
    rows = pq.read_table(pa.BufferReader(data))
    return ReadFile(path, len(data), hashlib.sha256(data).hexdigest(), rows)
