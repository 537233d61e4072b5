"""The pure parts of ``--workers``: the count, and one summary from the workers' summaries."""

from __future__ import annotations

import os

import pytest

from pipeline.core.errors import KbakError
from pipeline.ingest.workers import merge_summaries, worker_count


def test_worker_count():
    assert worker_count(None) == 1
    assert worker_count(3) == 3
    assert worker_count("2") == 2
    assert worker_count("auto") == (os.cpu_count() or 1)
    for bad in (0, "0", "-1", "many"):
        with pytest.raises(KbakError, match="--workers"):
            worker_count(bad)


def _part(records, versions, partitions, gaps=()):
    return {
        "source_cluster": "c",
        "topics": ["t"],
        "records": records,
        "bytes_written": records * 10,
        "commits": 1 if records else 0,
        "versions": versions,
        "partitions": {"t": partitions},
        "gaps": list(gaps),
        "warnings": [],
    }


def test_merge_summaries_adds_up_and_joins_a_partition_that_moved():
    a = _part(
        30,
        [2, 5],
        {
            "0": {"records": 20, "first_offset": 0, "last_offset": 19},
            "1": {"records": 10, "first_offset": 0, "last_offset": 9},
        },
    )
    b = _part(15, [3, 7], {"1": {"records": 15, "first_offset": 10, "last_offset": 24}})
    idle = _part(0, [None, None], {})
    s = merge_summaries([a, b, idle], "run-1", "/lake")
    assert (s.records, s.bytes_written, s.commits) == (45, 450, 2)
    assert (s.first_version, s.last_version) == (2, 7)
    assert s.partitions["t"][0] == {"records": 20, "first_offset": 0, "last_offset": 19}
    assert s.partitions["t"][1] == {"records": 25, "first_offset": 0, "last_offset": 24}
    assert s.backup_id == "run-1" and s.topics == ["t"]
