"""Consumer group positions carried over to the target: source offsets mapped through delivery reports.

A group's committed source offset C on a source partition means "records before C were consumed".
On each target partition the group must resume at the first replayed record it had not consumed:
the lowest target offset among delivered records whose source offset is >= C (for the source
partition they came from). If every record replayed there was consumed already, it resumes after
the last one. The state is small (two numbers per group and target partition) and is kept in the
checkpoint, so a resumed replay commits the same positions.
"""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaException, TopicPartition

from pipeline.core.errors import KbakError
from pipeline.core.schema import TP


class GroupMapper:
    def __init__(self, committed: dict[str, dict[TP, int]], state: dict | None = None, one_to_one: bool = True) -> None:
        self.committed = committed
        self.one_to_one = one_to_one  # each target partition fed by one source partition (no --repartition)
        # group -> "topic:partition" -> [resume_at or None, end (last target offset + 1)]
        self.targets: dict[str, dict[str, list]] = {g: dict((state or {}).get(g, {})) for g in committed}
        self.sources: dict[str, dict[str, TP]] = {g: {} for g in committed}  # 1:1 provenance for reports

    def delivered(self, src: TP, src_offset: int, dst: TP, dst_offset: int) -> None:
        for group, positions in self.committed.items():
            start = positions.get(src)
            if start is None:
                continue  # this group never consumed that partition: nothing to carry over
            key = f"{dst[0]}:{dst[1]}"
            slot = self.targets[group].get(key)
            if slot is None:
                slot = self.targets[group][key] = [None, dst_offset + 1]
            elif dst_offset + 1 > slot[1]:
                slot[1] = dst_offset + 1
            if src_offset >= start and (slot[0] is None or dst_offset < slot[0]):
                slot[0] = dst_offset
            if self.one_to_one:
                self.sources[group].setdefault(key, src)

    def state(self) -> dict:
        return self.targets

    def offsets(self, group: str) -> dict[TP, int]:
        out = {}
        for key, (resume_at, end) in self.targets[group].items():
            topic, _, p = key.rpartition(":")
            out[(topic, int(p))] = resume_at if resume_at is not None else end
        return out

    def report(self, group: str, snapshot: dict) -> dict:
        """The mapping as ``--json`` shows it: the source position and the target position it became."""
        rows = []
        for (topic, p), offset in sorted(self.offsets(group).items()):
            src = self.sources[group].get(f"{topic}:{p}")
            row = {"target_topic": topic, "target_partition": p, "target_offset": offset}
            if src is not None:
                row.update(source_topic=src[0], source_partition=src[1], source_offset=self.committed[group][src])
            rows.append(row)
        source = [{"topic": t, "partition": p, "offset": o} for (t, p), o in sorted(self.committed[group].items())]
        return {"snapshot": snapshot, "source_offsets": source, "committed": rows}


def commit_group(conf: dict[str, str], group: str, offsets: dict[TP, int]) -> None:
    """Commit ``offsets`` for ``group`` on the target (the group must have no active members)."""
    if not offsets:
        return
    consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
        result = consumer.commit(offsets=parts, asynchronous=False)
        bad = [tp for tp in result or [] if tp.error is not None]
        if bad:
            raise KbakError(f"committing offsets for group {group!r} failed: {bad[0].error.str()}")
    except KafkaException as exc:
        raise KbakError(f"committing offsets for group {group!r} failed: {exc.args[0].str()}") from None
    finally:
        consumer.close()
