"""``kbak compact``: rewrite the small files of each (topic, date) into files near a target size.

Continuous ingest commits every few seconds, leaving many small files per day. Compaction reads them,
orders the rows by partition then offset, writes files near ``target_file_size`` and swaps them in
with one commit per (topic, date). That commit carries no application transactions, so ingest's
exactly-once state is untouched, and a concurrent ingest commit is retried around (delta-rs rebases an
append-and-remove onto a newer version as long as nobody else removed the same files).

Nothing is trusted: the records' content digest (``pipeline.custody.digest``) is computed over the
files removed and again over the files added *as read back from storage*; a difference aborts before
the commit. The manifest records both lists with SHA-256 and the digest; ``validate --deep`` recomputes
it. The removed files stay in storage for time travel until ``kbak vacuum`` is allowed to delete them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import defaults
from pipeline.core.errors import KbakError
from pipeline.core.schema import RECORD_SCHEMA
from pipeline.core.storage import Lake
from pipeline.core.table import open_table
from pipeline.custody.digest import RecordDigest, combine, record_digest
from pipeline.custody.operation import ConcurrentRemoval, commit_operation, remove_action
from pipeline.ingest.commit import add_action
from pipeline.ingest.writer import MIN_TARGET_FILE_SIZE as MIN_TARGET
from pipeline.ingest.writer import DataFile, write_files
from pipeline.lifecycle.files import LiveFile, live_files, parse_day, read_file, topic_pattern

DEFAULT_TARGET = defaults.TARGET_FILE_SIZE


@dataclass
class GroupPlan:
    """One (topic, date): the bins of small files that become one file each (about)."""

    topic: str
    day: date
    bins: list[list[LiveFile]] = field(default_factory=list)

    @property
    def files(self) -> list[LiveFile]:
        return [f for b in self.bins for f in b]


def plan(
    lake: Lake,
    topics: str | None = None,
    from_date: str | None = None,
    to_date: str | None = None,
    target_file_size: int = DEFAULT_TARGET,
) -> list[GroupPlan]:
    """What a compaction would rewrite: per (topic, date), consecutive small files packed up to the target."""
    check_target(target_file_size)
    pattern = topic_pattern(topics)
    lo, hi = parse_day(from_date, "--from-date"), parse_day(to_date, "--to-date")
    out = []
    for (topic, day), files in live_files(open_table(lake)).items():
        if pattern is not None and not pattern.fullmatch(topic):
            continue
        if (lo and day < lo) or (hi and day > hi):
            continue
        bins = _pack([f for f in files if f.size < target_file_size], target_file_size)
        if bins:
            out.append(GroupPlan(topic, day, bins))
    return out


def check_target(target_file_size: int) -> None:
    if target_file_size < MIN_TARGET:
        raise KbakError(f"--target-file-size {target_file_size} is below 1 MiB ({MIN_TARGET} bytes)")


def _pack(small: list[LiveFile], target: int) -> list[list[LiveFile]]:
    """Consecutive files into bins of at most ``target`` bytes; bins of one file are left alone."""
    bins: list[list[LiveFile]] = []
    current: list[LiveFile] = []
    size = 0
    for f in small:
        if current and size + f.size > target:
            bins.append(current)
            current, size = [], 0
        current.append(f)
        size += f.size
    bins.append(current)
    return [b for b in bins if len(b) > 1]


def compact(
    lake: Lake,
    topics: str | None = None,
    from_date: str | None = None,
    to_date: str | None = None,
    target_file_size: int = DEFAULT_TARGET,
    dry_run: bool = False,
) -> dict:
    """Compact every matching (topic, date); one commit per (topic, date). Returns what was done."""
    groups = plan(lake, topics, from_date, to_date, target_file_size)
    results = []
    for n, g in enumerate(groups, 1):
        if dry_run:
            results.append(
                {
                    "topic": g.topic,
                    "date": g.day.isoformat(),
                    "files_to_rewrite": len(g.files),
                    "bytes": sum(f.size for f in g.files),
                    "records": sum(f.add.get("num_records") or 0 for f in g.files),
                    "files_after": len(g.bins),
                }
            )
        else:
            # The last commit gets a checkpoint: readers then skip the removed files' log entries.
            results.append(compact_group(lake, g, target_file_size, checkpoint=n == len(groups)))
    return {"lake": lake.uri, "dry_run": dry_run, "target_file_size": target_file_size, "groups": results}


def compact_group(lake: Lake, group: GroupPlan, target_file_size: int, checkpoint: bool = False) -> dict:
    """Rewrite one (topic, date) group, verify its records' digest, and commit the swap."""
    removed: list[dict] = []
    written: list[DataFile] = []
    before: list[RecordDigest] = []
    try:
        for files in group.bins:
            reads = [read_file(lake, f.path) for f in files]
            removed += [_entry(f, r.sha256, r.rows.num_rows) for f, r in zip(files, reads, strict=True)]
            rows = pa.concat_tables([r.rows for r in reads], promote_options="permissive")
            before.append(record_digest(rows, group.topic))  # digests add up: one pass per bin
            written += write_files(lake, _as_records(rows, group.topic, group.day), target_file_size=target_file_size)
        want = combine(before)
        got = combine(record_digest(read_file(lake, f.path).rows, group.topic) for f in written)
        if got != want:
            raise KbakError(
                f"compaction of {group.topic} {group.day} would change its records (digest {want.hex[:12]}… "
                f"over {want.records} records before, {got.hex[:12]}… over {got.records} after): nothing committed"
            )
        body = {
            "topic": group.topic,
            "date": group.day.isoformat(),
            "target_file_size": target_file_size,
            "files_removed": removed,
            "files_added": [f.manifest_entry() for f in written],
            "content_digest": want.as_dict(),
        }
    except BaseException:
        for f in written:  # not committed: leave no stray files behind
            with contextlib.suppress(OSError):
                lake.delete(f.path)
        raise
    # From here a failure may come after the commit landed: the new files are deleted only when
    # nothing was committed for sure (another commit removed these files first).
    try:
        version = commit_operation(
            lake,
            open_table(lake),
            "compact",
            body,
            add=[add_action(f) for f in written],
            remove=[remove_action(f.add) for f in group.files],
            checkpoint=checkpoint,
        )
    except ConcurrentRemoval:
        for f in written:
            with contextlib.suppress(OSError):
                lake.delete(f.path)
        raise
    return {
        "topic": group.topic,
        "date": group.day.isoformat(),
        "version": version,
        "files_removed": len(removed),
        "files_added": len(written),
        "records": want.records,
        "bytes_before": sum(f["size"] for f in removed),
        "bytes_after": sum(f.size for f in written),
        "content_digest": want.as_dict(),
    }


def _entry(f: LiveFile, sha256: str, records: int) -> dict:
    return {
        "path": f.path,
        "size": f.size,
        "records": records,
        "sha256": sha256,
        "partition_values": {"topic": f.topic, "date": f.day.isoformat()},
    }


def _as_records(rows: pa.Table, topic: str, day: date) -> pa.Table:
    """File rows of one (topic, date) as record-schema rows ordered by partition, then offset."""
    rows = rows.take(pc.sort_indices(rows, sort_keys=[("partition", "ascending"), ("offset", "ascending")]))
    n = rows.num_rows
    columns = {
        name: (
            pa.array([topic] * n, pa.string())
            if name == "topic"
            else pa.array([day] * n, pa.date32())
            if name == "date"
            else rows[name]
        )
        for name in RECORD_SCHEMA.names
    }
    return pa.table(columns).cast(RECORD_SCHEMA)
