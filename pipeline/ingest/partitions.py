"""What ingest knows about each partition it reads, kept in one place with one reset."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.schema import TP


@dataclass
class PartitionState:
    """One partition's reading state, owned by the ingest loop's (main) thread.

    ``generation`` counts re-positionings (assignment, or another writer moving the partition on),
    so a commit result cut before one is recognised as stale.
    """

    expected: int | None = None  # last offset the Delta log holds (what the next commit fences on)
    generation: int = 0
    assigned: bool = False
    last_seen: int | None = None  # last offset consumed (buffered or committed)
    end: int | None = None  # high watermark seen by a fetch, while reading a snapshot
    done: bool = False  # --once: read to the end, paused
    gap: dict | None = None  # a retention gap to record with the next commit of this partition

    def reset(self, have: int | None) -> None:
        """Continue from ``have`` (what the Delta log says): everything read since is void."""
        self.expected = have
        self.generation += 1
        self.done = False
        self.end = None


class Partitions(dict[TP, PartitionState]):
    """Every partition the run has touched; missing ones spring into being on first use."""

    def __missing__(self, tp: TP) -> PartitionState:
        state = self[tp] = PartitionState()
        return state

    def assigned(self) -> set[TP]:
        return {tp for tp, s in self.items() if s.assigned}

    def unassign(self, tps) -> None:
        for tp in tps:
            if tp in self:
                self[tp].assigned = False
                self[tp].done = False
