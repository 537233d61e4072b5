"""The fence of an ingest commit: what the Delta log's application transaction says per partition.

Reading one partition's transaction (``DeltaTable.transaction_version``) replays the log entries since
the last checkpoint, and the checkpoint itself when the partition was last set before it: ~5 GETs per
partition on S3, 0.1-1.4 ms of CPU locally, on every commit. A worker that commits continuously mostly
asks for values it has just read or committed itself, at a version nobody else has moved since:
``KnownTxns`` keeps those, so the fence reads the log only for what changed or what it never saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from deltalake import DeltaTable

from pipeline.core.schema import TP
from pipeline.core.table import app_id


@dataclass
class KnownTxns:
    """Application-transaction values a worker knows the Delta log holds at ``version``, per partition.

    A committed Delta version never changes, so a value read or committed at version ``v`` is what any
    reader of ``v`` finds (no transaction expires: kbak's tables set no ``delta.setTransactionRetentionDuration``):
    taking it from here instead of the log is the same fence. One object per lake and source cluster
    (a worker's committer keeps one); facts about another version are unused.
    """

    version: int | None = None
    values: dict[TP, int | None] = field(default_factory=dict)

    def at(self, version: int) -> dict[TP, int | None]:
        """The values known at ``version`` (none if what is known is about another version)."""
        return self.values if version == self.version else {}

    def read(self, version: int, values: Mapping[TP, int | None]) -> None:
        """``values`` were read from the log at ``version``."""
        if version != self.version:
            self.version, self.values = version, {}
        self.values.update(values)

    def committed(self, read_version: int, version: int, values: Mapping[TP, int | None]) -> None:
        """Our commit, made on a table read at ``read_version``, landed at ``version`` and set ``values``.

        What was known at the read version still holds at ``version`` only if no other commit came
        between (delta-rs commits over non-conflicting ones: they may have set other partitions).
        """
        kept = self.values if self.version == read_version and version == read_version + 1 else {}
        self.version, self.values = version, {**kept, **values}


def fence(
    dt: DeltaTable, expected: Mapping[TP, int | None], cluster: str, known: KnownTxns | None = None
) -> dict[TP, int | None]:
    """The partitions whose transaction in ``dt``'s version is not ``expected``, with what it is instead."""
    version = dt.version()
    facts = known.at(version) if known is not None else {}
    have = {tp: facts[tp] if tp in facts else dt.transaction_version(app_id(cluster, *tp)) for tp in expected}
    if known is not None:
        known.read(version, have)
    return {tp: v for tp, v in have.items() if v != expected[tp]}
