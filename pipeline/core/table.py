"""Creating and opening the archive's Delta table, and reading ingest progress from its log."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from deltalake import DeltaTable, PostCommitHookProperties
from deltalake.exceptions import TableNotFoundError

from pipeline.core.errors import KbakError, NotAnArchiveError, first_line
from pipeline.core.parsing import parse_time
from pipeline.core.storage import Lake, storage_error
from pipeline.core.timefmt import EPOCH, iso_ms


class CorruptLogError(KbakError):
    """A Delta log entry is not complete JSON (truncated, overwritten): the table cannot be read."""


SEVEN_YEARS = "interval 2557 days"

# How long ``kbak vacuum`` keeps the files compaction (or any rewrite) removed, so time travel to older
# versions keeps working. A kbak property, not Delta's ``delta.deletedFileRetentionDuration``: that one is
# also the tombstone window, and every checkpoint carries a remove action for each file removed within it.
# Seven years of tombstones (a continuous ingest's thousands of small files a day, each compacted away)
# would make every checkpoint, written every ten versions and read by every reader, grow without end.
REMOVED_FILE_RETENTION = "kbak.removedFileRetentionDuration"
DELTA_TOMBSTONE_WINDOW = "delta.deletedFileRetentionDuration"

# Explicit at creation so every reader (Spark, Trino, Power BI, DuckDB, polars) sees the same
# guarantees: seven years of log (audit time travel), removed files kept seven years by kbak, Delta's
# default week of tombstones in checkpoints, frequent checkpoints, statistics on the columns audits
# filter by.
TABLE_CONFIGURATION: dict[str, str] = {
    "delta.logRetentionDuration": SEVEN_YEARS,
    DELTA_TOMBSTONE_WINDOW: "interval 7 days",
    REMOVED_FILE_RETENTION: SEVEN_YEARS,
    "delta.checkpointInterval": "10",
    "delta.dataSkippingStatsColumns": "partition,offset,timestamp,timestamp_type,source_cluster,ingested_at",
}


# The frequent commits (ingest, every flush) skip delta-rs's expired-log cleanup: it lists and stats
# every entry of ``_delta_log/`` after each commit, a cost that grows with every version, and with the
# seven-year log retention it has nothing to remove for seven years. kbak's own operations (compact,
# retention, vacuum: daily at most) keep the table's default, so expired entries still go.
# Checkpoints stay on (every ``delta.checkpointInterval`` versions): they keep each reader's log replay short.
FREQUENT_COMMIT_HOOKS = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


def delta_interval(text: str) -> timedelta | None:
    """A Delta table property's interval (``interval 7 days``, ``interval 1 week``); None when not one."""
    m = re.fullmatch(r"\s*interval\s+(\d+)\s+(week|day|hour|minute|second)s?\s*", text.lower())
    return timedelta(**{f"{m.group(2)}s": int(m.group(1))}) if m else None


def app_id(source_cluster: str, topic: str, partition: int) -> str:
    """The Delta application-transaction id that carries one partition's ingest progress."""
    return f"kbak:{source_cluster}:{topic}:{partition}"


def open_table(lake: Lake, version: int | str | None = None) -> DeltaTable:
    """Open an existing kbak archive (optionally as of a version or timestamp); errors are one line."""
    try:
        dt = DeltaTable(lake.uri, storage_options=lake.storage_options or None)
    except TableNotFoundError:
        raise NotAnArchiveError(f"no kbak archive at {lake.uri} (no Delta table there)") from None
    except Exception as exc:  # deltalake raises OSError and DeltaError for storage and log problems
        raise open_error(lake, exc) from None
    _check_archive(dt, lake.uri)
    if version is not None:
        _load_as_of(dt, version, lake)
    return dt


def _column(name: str, kind: str | dict, nullable: bool = False) -> dict:
    return {"name": name, "type": kind, "nullable": nullable, "metadata": {}}


# A kbak archive's schema as its Delta log states it (``RECORD_SCHEMA`` through deltalake; a unit test
# keeps the two equal). Opening a table compares the log's schema with it first: an archive kbak created
# needs no pyarrow to check, so a plain ``kbak query`` never loads it (~55 ms). Any other schema gets
# ``check_table_schema``, which names the difference.
ARCHIVE_DELTA_SCHEMA = {
    "type": "struct",
    "fields": [
        _column("topic", "string"),
        _column("partition", "integer"),
        _column("offset", "long"),
        _column("timestamp", "timestamp"),
        _column("timestamp_type", "string"),
        _column("key", "binary", nullable=True),
        _column("value", "binary", nullable=True),
        _column(
            "headers",
            {
                "type": "array",
                "elementType": {
                    "type": "struct",
                    "fields": [_column("key", "string"), _column("value", "binary", nullable=True)],
                },
                "containsNull": False,
            },
        ),
        _column("date", "date"),
        _column("source_cluster", "string"),
        _column("ingested_at", "timestamp"),
    ],
}
ARCHIVE_PARTITIONS = ["topic", "date"]  # = schema.PARTITION_COLUMNS (the same unit test)


def _check_archive(dt: DeltaTable, where: str) -> None:
    partitions = dt.metadata().partition_columns
    if partitions == ARCHIVE_PARTITIONS and json.loads(dt.schema().to_json()) == ARCHIVE_DELTA_SCHEMA:
        return
    import pyarrow as pa

    from pipeline.core.schema import check_table_schema

    check_table_schema(pa.schema(dt.schema().to_arrow()), partitions, where)


def open_error(lake: Lake, exc: BaseException) -> KbakError:
    """One line for a failure to load the table: storage access, a corrupt log entry, or the library's words."""
    err = storage_error(lake, exc)
    if err is not None:
        return err
    if "json" in str(exc).lower():
        corrupt = corrupt_log_entries(lake)
        if corrupt:
            rel, detail = corrupt[0]
            more = f" (and {len(corrupt) - 1} more)" if len(corrupt) > 1 else ""
            return CorruptLogError(f"corrupt Delta log entry {rel}: {detail}{more}")
    return KbakError(f"cannot open lake {lake.uri}: {first_line(exc)}")


def log_entry_problem(data: bytes) -> str | None:
    """None when a Delta log entry is complete newline-delimited JSON objects, else what is wrong."""
    import json

    try:
        for n, line in enumerate(data.decode().splitlines(), 1):
            if line.strip() and not isinstance(json.loads(line), dict):
                return f"line {n} is not a JSON object"
    except UnicodeDecodeError as exc:
        return f"not UTF-8 ({exc.reason})"
    except ValueError as exc:
        return f"not valid JSON, truncated or overwritten? ({exc})"
    return None


def corrupt_log_entries(lake: Lake) -> list[tuple[str, str]]:
    """(entry, problem) for every Delta log entry that is not valid JSON, oldest first."""
    out = []
    for rel in lake.list_files("_delta_log"):
        name = rel.rsplit("/", 1)[-1]
        if rel.count("/") == 1 and name.endswith(".json") and name[:-5].isdigit():
            problem = log_entry_problem(lake.read_bytes(rel))
            if problem:
                out.append((rel, problem))
    return out


def _load_as_of(dt: DeltaTable, version: int | str, lake: Lake) -> None:
    """A version number, or a time in any form ``parse_time`` takes (the newest version at that time)."""
    text = str(version).strip()
    if text.isdigit():
        newest = dt.version()
        if int(text) > newest:
            raise KbakError(f"{lake.uri} has no version {text!r}: the newest is {newest}")
        try:
            dt.load_as_version(int(text))
        except Exception as exc:  # deltalake raises several types for "no such version"
            raise KbakError(f"{lake.uri} has no version {text!r}: {first_line(exc)}") from None
        return
    wanted = parse_time(text, "--as-of")
    if wanted < (commit_ms(dt, lake, 0) or wanted):
        raise KbakError(f"{lake.uri} has no version {text!r}: the table was created after that time")
    try:
        found = _version_at(dt, lake, wanted)
        dt.load_as_version(found if found is not None else EPOCH + timedelta(milliseconds=wanted))
    except Exception as exc:
        raise KbakError(f"{lake.uri} has no version {text!r}: {first_line(exc)}") from None


def _version_at(dt: DeltaTable, lake: Lake, wanted: int) -> int | None:
    """The newest version committed at or before ``wanted`` (ms) by its commit's own timestamp.

    The times ``kbak list`` and ``history`` show, which a copy of the lake keeps. delta-rs goes by the log
    entries' modification times instead, which the storage sets a moment after the commit's timestamp
    (and a copy resets). A binary search: ~15 log entries read at 20,000 versions. None when an entry
    it needs is gone (expired behind a checkpoint): delta-rs's way then.
    """
    lo, hi = 0, dt.version()  # the caller checked that version 0 is at or before ``wanted``
    newest = commit_ms(dt, lake, hi)
    if newest is not None and newest <= wanted:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        at = commit_ms(dt, lake, mid)
        if at is None:
            return None
        lo, hi = (mid, hi) if at <= wanted else (lo, mid)
    return lo if newest is not None else None


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
