"""Creating and opening the archive's Delta table, and reading ingest progress from its log."""

from __future__ import annotations

import json
from datetime import timedelta

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from pipeline.core.errors import KbakError, first_line
from pipeline.core.parsing import parse_time
from pipeline.core.schema import check_table_schema
from pipeline.core.storage import Lake
from pipeline.core.timefmt import EPOCH, iso_ms

SEVEN_YEARS = "interval 2557 days"

# Explicit at creation so every reader (Spark, Trino, Power BI, DuckDB, polars) sees the same
# guarantees: seven years of log and of removed files (audit time travel), frequent checkpoints,
# statistics on the columns audits filter by.
TABLE_CONFIGURATION: dict[str, str] = {
    "delta.logRetentionDuration": SEVEN_YEARS,
    "delta.deletedFileRetentionDuration": SEVEN_YEARS,
    "delta.checkpointInterval": "10",
    "delta.dataSkippingStatsColumns": "partition,offset,timestamp,timestamp_type,source_cluster,ingested_at",
}


def app_id(source_cluster: str, topic: str, partition: int) -> str:
    """The Delta application-transaction id that carries one partition's ingest progress."""
    return f"kbak:{source_cluster}:{topic}:{partition}"


def open_table(lake: Lake, version: int | str | None = None) -> DeltaTable:
    """Open an existing kbak archive (optionally as of a version or timestamp); errors are one line."""
    try:
        dt = DeltaTable(lake.uri, storage_options=lake.storage_options or None)
    except TableNotFoundError:
        raise KbakError(f"no kbak archive at {lake.uri} (no Delta table there)") from None
    except OSError as exc:
        raise KbakError(f"cannot open lake {lake.uri}: {first_line(exc)}") from None
    check_table_schema(pa.schema(dt.schema().to_arrow()), dt.metadata().partition_columns, lake.uri)
    if version is not None:
        _load_as_of(dt, version, lake)
    return dt


def _load_as_of(dt: DeltaTable, version: int | str, lake: Lake) -> None:
    """A version number, or a time in any form ``parse_time`` takes (the newest version at that time)."""
    text = str(version).strip()
    if text.isdigit():
        try:
            dt.load_as_version(int(text))
        except Exception as exc:  # deltalake raises several types for "no such version"
            raise KbakError(f"{lake.uri} has no version {text!r}: {first_line(exc)}") from None
        return
    wanted = parse_time(text, "--as-of")
    if wanted < (commit_ms(dt, lake, 0) or wanted):
        raise KbakError(f"{lake.uri} has no version {text!r}: the table was created after that time")
    try:
        dt.load_as_version(EPOCH + timedelta(milliseconds=wanted))
    except Exception as exc:
        raise KbakError(f"{lake.uri} has no version {text!r}: {first_line(exc)}") from None


def commit_ms(dt: DeltaTable, lake: Lake, version: int) -> int | None:
    """When ``version`` was committed (its commitInfo timestamp), or None when its log entry is gone."""
    entry = f"_delta_log/{version:020d}.json"
    if not lake.exists(entry):
        return None  # past log retention (behind a checkpoint)
    for line in lake.read_bytes(entry).decode().splitlines():
        info = json.loads(line).get("commitInfo") if line.strip() else None
        if info and "timestamp" in info:
            return int(info["timestamp"])
    return None


def as_of_note(lake: Lake, as_of: int | str | None) -> str | None:
    """For a time after the newest version: a line saying so and which version is read (else None).

    That is a valid as-of (the table as it stands), but a user may have meant an earlier state.
    """
    text = "" if as_of is None else str(as_of).strip()
    if not text or text.isdigit():
        return None
    wanted = parse_time(text, "--as-of")
    dt = open_table(lake)
    newest = dt.version()
    at = commit_ms(dt, lake, newest)
    if at is None or wanted <= at:
        return None
    return f"--as-of {text} is after the newest version ({newest}, committed {iso_ms(at)}): reading version {newest}"


def committed_offsets(dt: DeltaTable, source_cluster: str, partitions: list[tuple[str, int]]) -> dict:
    """Last archived offset per (topic, partition), from the Delta log; absent when never archived."""
    out: dict[tuple[str, int], int] = {}
    for topic, partition in partitions:
        v = dt.transaction_version(app_id(source_cluster, topic, partition))
        if v is not None:
            out[(topic, partition)] = v
    return out
