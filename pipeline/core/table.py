"""Creating and opening the archive's Delta table, and reading ingest progress from its log."""

from __future__ import annotations

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from pipeline.core.errors import KbakError, first_line
from pipeline.core.schema import check_table_schema
from pipeline.core.storage import Lake

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
    text = str(version)
    try:
        if text.isdigit():
            dt.load_as_version(int(text))
        else:
            dt.load_as_version(text)
    except Exception as exc:  # deltalake raises several types for "no such version"
        raise KbakError(f"{lake.uri} has no version {text!r}: {first_line(exc)}") from None
    if not text.isdigit():
        _check_not_before_creation(dt, text, lake)


def _check_not_before_creation(dt: DeltaTable, text: str, lake: Lake) -> None:
    """deltalake loads version 0 for a time before the table existed; that is no version at all."""
    import json
    from datetime import UTC, datetime

    try:
        wanted = datetime.fromisoformat(text)
    except ValueError:
        return  # deltalake accepted a format Python does not parse: trust it
    wanted = wanted if wanted.tzinfo else wanted.replace(tzinfo=UTC)
    entry = f"_delta_log/{dt.version():020d}.json"
    if not lake.exists(entry):
        return  # that log entry is past retention (behind a checkpoint): nothing to compare with
    for line in lake.read_bytes(entry).decode().splitlines():
        info = json.loads(line).get("commitInfo") if line.strip() else None
        if info and "timestamp" in info and wanted.timestamp() * 1000 < info["timestamp"]:
            raise KbakError(f"{lake.uri} has no version {text!r}: the table was created after that time")


def committed_offsets(dt: DeltaTable, source_cluster: str, partitions: list[tuple[str, int]]) -> dict:
    """Last archived offset per (topic, partition), from the Delta log; absent when never archived."""
    out: dict[tuple[str, int], int] = {}
    for topic, partition in partitions:
        v = dt.transaction_version(app_id(source_cluster, topic, partition))
        if v is not None:
            out[(topic, partition)] = v
    return out
