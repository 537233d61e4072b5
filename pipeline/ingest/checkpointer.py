"""The appender's Delta checkpoints: the last checkpoint plus the entries since, copied, not rebuilt.

A Delta checkpoint lists every live file, so writing one costs time in proportion to the live files,
whoever writes it. delta-rs 1.6 also loads the table's state to write one: 50 ms at 5,300 live files,
where kbak's copy of the rows takes about 10 ms at 20,000. Between two checkpoints, a continuous
ingest commits only add and ``txn`` actions. So the next checkpoint is the previous one's rows, with
the ``txn`` rows the new entries set replaced and their add rows appended. kbak writes that table in
the previous checkpoint's own Arrow schema, which is delta-rs's. Anything else since the last
checkpoint (a compaction's removes, a metadata change, an entry this process did not see) makes
delta-rs write the checkpoint from the table's state instead, and that one becomes the base for the next.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable

from pipeline.core.errors import first_line
from pipeline.core.storage import Lake
from pipeline.core.table import DELTA_TOMBSTONE_WINDOW, delta_interval
from pipeline.custody.manifest import checkpoint_path
from pipeline.custody.operation import write_checkpoint

log = logging.getLogger("kbak.ingest")

LAST_CHECKPOINT = "_delta_log/_last_checkpoint"
SIMPLE = {"add", "txn", "commitInfo"}  # the actions an incremental checkpoint can take in


# Parquet codec of kbak's checkpoints: every Parquet reader has snappy; at 20,000 live files the checkpoint
# is 1.8 MB against 13 MB uncompressed (as delta-rs writes them), and writing, hashing (the custody seal)
# and reading it all take less time.
CODEC = "snappy"
MAX_CHUNKS = 16  # the add rows are appended a chunk per checkpoint; joined into one past this many


class Checkpointer:
    """Follows every log entry after its base checkpoint, in order, and writes the next checkpoint.

    The base is held in three parts, so that a checkpoint costs a copy of the add rows and no more:
    the add rows (a table, appended to), the transactions (a dict: a partition's row is replaced by
    each commit), and the other rows (protocol, metadata, tombstones: a few).
    """

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.schema: pa.Schema | None = None  # the base checkpoint's schema (delta-rs's), None before one
        self.adds: pa.Table | None = None
        self.txns: dict[str, dict] = {}
        self.rest: pa.Table | None = None
        self.seen: int | None = None  # the newest version whose actions are taken in
        self.new_adds: list[dict] = []
        self.complete = False  # whether the base and only SIMPLE actions since make the next checkpoint

    def observe(self, version: int, actions: list[dict]) -> None:
        """Take in ``version``'s actions (every version after the base, in order; a gap needs delta-rs)."""
        if self.seen is None or version != self.seen + 1:
            self.complete = False
        self.seen = version
        for action in actions:
            if "add" in action:
                self.new_adds.append(action["add"])
            elif "txn" in action:
                self.txns[action["txn"]["appId"]] = action["txn"]
            elif not SIMPLE.intersection(action):
                self.complete = False

    def write(self, version: int, tombstone_window_ms: int | None) -> None:
        """A checkpoint at ``version`` (the newest observed), incrementally when it can be, else by delta-rs.

        Best effort, as delta-rs's post-commit hook: the commit has landed, and without the checkpoint
        readers only replay more of the log. A failure leaves no base: the next one is delta-rs's.
        """
        try:
            if self.schema is not None and self.complete and self.seen == version:
                self._write_next(version, tombstone_window_ms)
            else:
                self._delta_rs_writes(version)
        except Exception as exc:  # storage errors, deltalake's own errors
            self.schema, self.complete = None, False
            log.warning("no checkpoint at version %d of %s: %s", version, self.lake.uri, first_line(exc))
        self.new_adds = []

    def _write_next(self, version: int, tombstone_window_ms: int | None) -> None:
        new = pa.Table.from_pylist([{"add": a} for a in self.new_adds], schema=self.schema)
        self.adds = pa.concat_tables([self.adds, new])
        if self.adds.column("add").num_chunks > MAX_CHUNKS:
            self.adds = self.adds.combine_chunks()
        if tombstone_window_ms is not None:  # tombstones past Delta's window leave checkpoints, as delta-rs's do
            deleted = pc.struct_field(self.rest.column("remove"), "deletionTimestamp")
            cutoff = int(time.time() * 1000) - tombstone_window_ms
            self.rest = self.rest.filter(pc.fill_null(pc.greater_equal(deleted, cutoff), True))
        txns = pa.Table.from_pylist([{"txn": t} for t in self.txns.values()], schema=self.schema)
        table = pa.concat_tables([self.rest, txns, self.adds])
        data = io.BytesIO()
        pq.write_table(table, data, compression=CODEC, use_dictionary=False)  # paths and stats are unique
        if self.lake.write_new(checkpoint_path(version), data.getvalue()):
            last = {"version": version, "size": table.num_rows, "sizeInBytes": data.tell(),
                    "numOfAddFiles": self.adds.num_rows}  # fmt: skip
            self.lake.write_bytes(LAST_CHECKPOINT, json.dumps(last).encode())

    def _delta_rs_writes(self, version: int) -> None:
        """delta-rs writes the checkpoint from the table's state (unless one is there); it becomes the base."""
        dt = DeltaTable(self.lake.uri, version=version, storage_options=self.lake.storage_options or None)
        write_checkpoint(self.lake, dt, version)
        table = pq.read_table(io.BytesIO(self.lake.read_bytes(checkpoint_path(version))))
        is_add, is_txn = pc.is_valid(table.column("add")), pc.is_valid(table.column("txn"))
        self.adds = table.filter(is_add).combine_chunks()
        self.txns = {row["appId"]: row for row in table.filter(is_txn).column("txn").to_pylist()}
        self.rest = table.filter(pc.invert(pc.or_(is_add, is_txn)))
        self.schema, self.seen, self.complete = table.schema, version, True


def tombstone_window_ms(configuration: Mapping[str, str]) -> int | None:
    """``delta.deletedFileRetentionDuration`` in milliseconds (None when unreadable: keep every tombstone)."""
    window = delta_interval(configuration.get(DELTA_TOMBSTONE_WINDOW, "interval 1 week"))
    return None if window is None else int(window.total_seconds() * 1000)
