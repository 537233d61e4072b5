"""``kbak retention apply``: remove the (topic, date) partitions that are past their retention policy.

A (topic, date) expires once the whole UTC day is more than N days old (``date < today - N``), so a
partial day is never cut; its files are removed whole, without rewriting anything. A day with any
record under an open case hold is kept whole and reported for that case. Each apply is one commit
(operation ``retention``) whose manifest lists the files removed (SHA-256 of the bytes read) and,
per Kafka partition, the offset ranges removed (``removed_offsets``, reason ``retention``) so that the
holes it leaves are explained. ``kbak vacuum`` then deletes the files from storage.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from pipeline.core.storage import Lake
from pipeline.core.table import open_table
from pipeline.custody.cases import held_partitions, open_cases
from pipeline.custody.operation import commit_operation, remove_action
from pipeline.lifecycle.files import LiveFile, live_files, read_file
from pipeline.lifecycle.policies import effective, load_policies

OPERATION = "retention"


def apply(lake: Lake, dry_run: bool = False, now: datetime | None = None) -> dict:
    """Remove every expired, unheld (topic, date); one commit. ``now`` fakes the clock (tests)."""
    now = now or datetime.now(UTC)
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    policies = load_policies(lake)
    result: dict = {"lake": lake.uri, "dry_run": dry_run, "now": now.isoformat(), "version": None}
    if not policies:
        return {**result, "nothing_to_do": True, "message": f"no retention policy in {lake.uri}: nothing to do"}
    today = now.astimezone(UTC).date()
    dt = open_table(lake)
    cases = open_cases(lake)
    expired: list[tuple[str, object, int, str, list[LiveFile]]] = []
    kept: list[dict] = []
    for (topic, day), files in live_files(dt).items():
        policy, _ = effective(policies, topic)
        if policy is None or day >= today - timedelta(days=policy.days):
            continue
        held = held_partitions(lake, topic, day, cases)
        if held:
            kept.append({"topic": topic, "date": day.isoformat(), "cases": held, "files": len(files)})
            continue
        expired.append((topic, day, policy.days, policy.topics, files))
    partitions = [
        {"topic": t, "date": d.isoformat(), "days": n, "policy": p, "files": len(fs),
         "records": sum(f.add.get("num_records") or 0 for f in fs), "bytes": sum(f.size for f in fs)}
        for t, d, n, p, fs in expired
    ]  # fmt: skip
    result.update(partitions_removed=partitions, kept_for_cases=kept, nothing_to_do=not expired)
    if dry_run or not expired:
        return result
    removed, offsets = [], []
    for topic, day, _, _, files in expired:
        for f in files:
            read = read_file(lake, f.path)
            removed.append(
                {"path": f.path, "size": read.size, "records": read.rows.num_rows, "sha256": read.sha256,
                 "partition_values": {"topic": topic, "date": day.isoformat()}}
            )  # fmt: skip
            offsets.append((topic, read.rows.select(["partition", "offset"])))
    body = {
        "policies": [asdict(p) for p in policies],
        "now": now.isoformat(),
        "partitions_removed": partitions,
        "kept_for_cases": kept,
        "files_removed": removed,
        "files_added": [],
        "removed_offsets": removed_offsets(offsets, "retention"),
    }
    remove = [remove_action(f.add) for *_, files in expired for f in files]
    result["version"] = commit_operation(lake, dt, OPERATION, body, remove=remove)
    result["files_removed"] = len(removed)
    return result


def removed_offsets(parts: list[tuple[str, pa.Table]], reason: str) -> list[dict]:
    """Contiguous runs of removed offsets per (topic, partition): what explains the holes left."""
    by_tp: dict[tuple[str, int], list[np.ndarray]] = {}
    for topic, rows in parts:
        part = rows["partition"].to_numpy()
        off = rows["offset"].to_numpy()
        for p in np.unique(part):
            by_tp.setdefault((topic, int(p)), []).append(off[part == p])
    out = []
    for (topic, partition), arrays in sorted(by_tp.items()):
        offs = np.unique(np.concatenate(arrays))
        breaks = np.flatnonzero(np.diff(offs) != 1) + 1
        for run in np.split(offs, breaks):
            out.append(
                {"topic": topic, "partition": partition, "first_offset": int(run[0]), "last_offset": int(run[-1]),
                 "records": int(run.size), "reason": reason}
            )  # fmt: skip
    return out
