"""``kbak upgrade``: give an archive kbak created earlier the table configuration kbak creates now.

Today that is one change. Archives created before this release keep removed files for time travel by
Delta's ``delta.deletedFileRetentionDuration`` (seven years), which is also the window of tombstones
every checkpoint carries: a checkpoint grows with every file compaction ever removed. The upgrade
moves the guarantee to kbak's own ``kbak.removedFileRetentionDuration`` (same duration: nothing the
archive promised changes) and sets Delta's window to a week. One ``upgrade`` commit, with a custody
manifest naming each property's old and new value; running it again does nothing.
"""

from __future__ import annotations

from pipeline.core.storage import Lake
from pipeline.core.table import (
    DELTA_TOMBSTONE_WINDOW,
    REMOVED_FILE_RETENTION,
    SEVEN_YEARS,
    TABLE_CONFIGURATION,
    open_table,
)
from pipeline.custody.manifest import Operation
from pipeline.custody.operation import commit_operation


def changes(configuration: dict[str, str | None]) -> list[dict]:
    """The properties to set, each with its current (``from``) and new (``to``) value."""
    if REMOVED_FILE_RETENTION in configuration:
        return []  # created with, or upgraded to, kbak's own property: the windows are already apart
    window, week = configuration.get(DELTA_TOMBSTONE_WINDOW), TABLE_CONFIGURATION[DELTA_TOMBSTONE_WINDOW]
    out = [{"property": REMOVED_FILE_RETENTION, "from": None, "to": window or SEVEN_YEARS}]
    if window != week:
        out.append({"property": DELTA_TOMBSTONE_WINDOW, "from": window, "to": week})
    return out


def upgrade(lake: Lake, dry_run: bool = False) -> dict:
    """Set what ``changes`` lists, in one recorded commit (none when there is nothing to change)."""
    dt = open_table(lake)
    todo = changes(dt.metadata().configuration or {})
    result = {"lake": lake.uri, "dry_run": dry_run, "version": None, "changes": todo}
    if todo and not dry_run:
        props = {c["property"]: c["to"] for c in todo}
        result["version"] = commit_operation(lake, dt, Operation.UPGRADE.value, {"properties": todo}, properties=props)
    return result
