"""Ingest commits written straight to the Delta log, so that a commit costs the same at any table age.

Through delta-rs (1.6) each commit lists ``_delta_log/`` three times and rebuilds the list of every live
file twice: per-commit time grew ten-fold between 1,000 and 20,000 versions (docs/benchmarks.md). An
ingest commit is Delta's simplest kind, a blind append: new files, and the application transactions of
the partitions it archives. ``LogAppender`` writes it as the Delta protocol asks of any writer: the
JSON entry of the next version, created only if no other writer created it first (``Lake.write_new``:
a hard link locally, ``If-None-Match: *`` on S3, as delta-rs itself does).

The appender always knows the newest version it has seen, so it never lists the log: it reads the
entries after that version until one is missing. It checks each entry for what a blind append conflicts
with under Delta's rules (a protocol kbak does not write for, a change of schema or partitioning) and
keeps the application transactions the entries set. The fence reads those values from here, not from
the log. A table whose protocol asks for more than kbak writes (writer features, column mapping, change
data feed, ...) is committed through delta-rs, as before.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from deltalake import DeltaTable

from pipeline import __version__
from pipeline.core.errors import KbakError
from pipeline.core.schema import PARTITION_COLUMNS, TP
from pipeline.core.storage import Lake
from pipeline.core.table import CorruptLogError, app_id, log_entry_problem
from pipeline.custody.manifest import commit_actions, log_path
from pipeline.ingest.checkpointer import Checkpointer, tombstone_window_ms
from pipeline.ingest.writer import DataFile

# Writer version 2 adds append-only tables and column invariants: kbak's entries only append, and
# kbak's schema has no invariants. Higher versions (check constraints, change data feed, column
# mapping, table features) need delta-rs.
MAX_WRITER_VERSION = 2
INVARIANTS = "delta.invariants"  # a column's invariant, in its metadata: a writer must check it, kbak does not
MAX_READER_VERSION = 1
DELTA_RS_CHECKPOINT_INTERVAL = 100  # delta-rs's default, for a table that does not set one
ENGINE = f"kbak/{__version__}"


class Unsupported(KbakError):
    """The table needs a writer that knows more of the Delta protocol: commit through delta-rs."""


@dataclass
class LogAppender:
    """Appends ingest commits to one lake's Delta log; one per committing worker, kept across commits.

    ``txns`` holds application-transaction values at ``version`` (None: never set): every value learned
    from delta-rs, then updated from each log entry read or written since.
    """

    lake: Lake
    version: int
    schema: dict
    configuration: dict[str, str]
    txns: dict[str, int | None] = field(default_factory=dict)
    usable: bool = True  # False once an entry asked for more than kbak writes: delta-rs commits from then on
    checkpointer: Checkpointer = field(init=False)

    def __post_init__(self) -> None:
        self.checkpointer = Checkpointer(self.lake)

    @classmethod
    def open(cls, lake: Lake, dt: DeltaTable) -> LogAppender | None:
        """An appender continuing from ``dt``'s version; None when the table needs delta-rs to write it."""
        p = dt.protocol()
        protocol = {"minReaderVersion": p.min_reader_version, "minWriterVersion": p.min_writer_version,
                    "readerFeatures": p.reader_features, "writerFeatures": p.writer_features}  # fmt: skip
        if not _supported(protocol):
            return None
        md = dt.metadata()
        schema = dt.schema().to_json()
        if list(md.partition_columns) != list(PARTITION_COLUMNS) or INVARIANTS in schema:
            return None
        return cls(lake, dt.version(), json.loads(schema), dict(md.configuration or {}))

    def fence(self, dt: DeltaTable, expected: Mapping[TP, int | None], cluster: str) -> dict[TP, int | None]:
        """The partitions whose transaction at the newest version is not ``expected``, with what it is instead.

        A partition first seen is read from delta-rs (``dt`` brought to the newest version: at or after
        this appender's); the entries read after that set it again in order, so it ends right either way.
        """
        apps = {tp: app_id(cluster, *tp) for tp in expected}
        unknown = [a for a in apps.values() if a not in self.txns]
        if unknown:
            dt.update_incremental()
            self.txns.update({a: dt.transaction_version(a) for a in unknown})
        self.catch_up()
        return {tp: self.txns[a] for tp, a in apps.items() if self.txns[a] != expected[tp]}

    def catch_up(self) -> None:
        """Read the entries other writers committed after ``version``, until one is missing."""
        while True:
            path = log_path(self.version + 1)
            try:
                data = self.lake.read_bytes(path)
            except FileNotFoundError:
                return
            problem = log_entry_problem(data)
            if problem:  # a reader could not open the table either: stop, as delta-rs would
                raise CorruptLogError(f"corrupt Delta log entry {path}: {problem}")
            self._apply(commit_actions(data))
            self.version += 1

    def append(self, files: Sequence[DataFile], txns: Mapping[str, int], info: Mapping[str, object]) -> int | None:
        """Commit ``files`` and ``txns`` as the next version; None when another writer took that version.

        On None, ``catch_up`` and the fence come next: the entry that won may have moved our partitions.
        """
        version = self.version + 1
        actions = entry_actions(files, txns, info)
        if not self.lake.write_new(log_path(version), serialize(actions)):
            return None
        self.version = version
        self.txns.update(txns)
        self.checkpointer.observe(version, actions)
        return version

    @property
    def checkpoint_interval(self) -> int:
        try:
            return max(1, int(self.configuration.get("delta.checkpointInterval", DELTA_RS_CHECKPOINT_INTERVAL)))
        except ValueError:
            return DELTA_RS_CHECKPOINT_INTERVAL

    def checkpoint_due(self, version: int) -> bool:
        """Whether delta-rs's post-commit hook would have written a checkpoint at ``version``."""
        return (version + 1) % self.checkpoint_interval == 0

    def write_checkpoint(self, version: int) -> None:
        """The checkpoint at ``version`` (just committed by this appender): see ingest/checkpointer.py."""
        self.checkpointer.write(version, tombstone_window_ms(self.configuration))

    def _apply(self, actions: list[dict]) -> None:
        self.checkpointer.observe(self.version + 1, actions)
        for action in actions:
            if "txn" in action:
                self.txns[action["txn"]["appId"]] = int(action["txn"]["version"])
            elif "protocol" in action and not _supported(action["protocol"]):
                self._refuse("the Delta protocol")
            elif "metaData" in action:
                md = action["metaData"]
                if (
                    md.get("partitionColumns") != list(PARTITION_COLUMNS)
                    or json.loads(md["schemaString"]) != self.schema
                ):
                    self._refuse("the table's schema or partitioning")
                self.configuration = dict(md.get("configuration") or {})

    def _refuse(self, what: str) -> None:
        self.usable = False
        raise Unsupported(f"version {self.version + 1} of {self.lake.uri} changed {what}")


def entry_actions(files: Sequence[DataFile], txns: Mapping[str, int], info: Mapping[str, object]) -> list[dict]:
    """A blind append's Delta log entry: commit info (with kbak's keys), add actions, transactions.

    The same actions, in the same order, as delta-rs writes for ``create_write_transaction`` in append mode.
    """
    now = int(time.time() * 1000)
    commit_info = {
        "timestamp": now,
        "operation": "WRITE",
        "operationParameters": {
            "mode": "Append",
            "partitionBy": json.dumps(list(PARTITION_COLUMNS), separators=(",", ":")),
        },
        "engineInfo": ENGINE,
        "clientVersion": ENGINE,
        **info,
    }
    actions: list[dict] = [{"commitInfo": commit_info}]
    for f in files:
        add = {
            "path": f.path,
            "partitionValues": f.partition_values,
            "size": f.size,
            "modificationTime": f.modification_time,
            "dataChange": True,
            "stats": f.stats,
        }
        actions.append({"add": add})
    actions += [{"txn": {"appId": a, "version": v, "lastUpdated": now}} for a, v in txns.items()]
    return actions


def serialize(actions: list[dict]) -> bytes:
    """Newline-delimited JSON, compact, as delta-rs writes entries."""
    return "\n".join(_compact_json(a) for a in actions).encode() + b"\n"


def _compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _supported(protocol: dict) -> bool:
    """Whether a Delta protocol action asks for nothing beyond what kbak's entries satisfy."""
    return (
        protocol.get("minReaderVersion", 1) <= MAX_READER_VERSION
        and protocol.get("minWriterVersion", 1) <= MAX_WRITER_VERSION
        and not protocol.get("writerFeatures")
        and not protocol.get("readerFeatures")
    )
