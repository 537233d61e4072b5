"""``--as-of TIME`` resolves to a version by the commits' own timestamps (``pipeline.core.table``)."""

from __future__ import annotations

import datetime as dt_
import json
import os

from support.custody_lakes import record_rows as rows

from pipeline.core.storage import Lake
from pipeline.core.table import open_table
from pipeline.custody.manifest import log_path
from pipeline.ingest.commit import commit_records, ensure_table


def test_as_of_a_time_goes_by_the_commits_own_timestamps(tmp_path):
    """A lake copied (or written by a slow store) has log entries modified after their commit time."""
    lake = Lake.at(tmp_path / "lake")
    dt = ensure_table(lake)
    for i in range(3):
        expected = {("t", 0): None if i == 0 else i * 5 - 1}
        commit_records(lake, dt, rows("t", 0, i * 5, 5), expected, source_cluster="c", backup_id="b")
    stamps = [json.loads(lake.read_bytes(log_path(v)).splitlines()[0])["commitInfo"]["timestamp"] for v in range(4)]
    for v in range(4):  # every entry's modification time an hour after its commit, as a copy would leave it
        entry = lake.path(log_path(v))
        os.utime(entry, ns=(os.stat(entry).st_atime_ns, (stamps[v] + 3_600_000) * 1_000_000))
    for v in range(4):
        at = dt_.datetime.fromtimestamp(stamps[v] / 1000, dt_.UTC).isoformat()
        assert open_table(lake, at).version() == v
