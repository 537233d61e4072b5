"""After a crash: find the records a killed replay delivered but had not yet written to its checkpoint.

The checkpoint is rewritten every half second, so a process killed outright (SIGKILL, power loss)
may have delivered records the file does not list. Before resuming, kbak reads each target
partition from the position the checkpoint knows (the offset after the last checkpointed record,
or the partition's end before the replay first wrote to it) to its end, and matches what it finds,
in order, against the next records the replay would produce (key, value, headers, timestamp, byte
for byte). Matches count as delivered, so the rerun does not produce them twice.

This needs each target partition to be fed by one source partition, which holds when partitions
are kept (no ``--repartition``) and no two source topics map to the same target topic; otherwise
reconciliation is skipped and only what the checkpoint lists is skipped.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

from pipeline.core.errors import KbakError
from pipeline.replay.checkpoint import Checkpoint
from pipeline.replay.offsets import GroupMapper
from pipeline.replay.options import ReplayOptions
from pipeline.replay.produce import provenance
from pipeline.replay.select import Selection

READ_TIMEOUT_S = 60.0


def target_ends(conf: dict[str, str], partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The current end offset of each target partition (recorded before a replay first writes to it)."""
    consumer = Consumer({**conf, "group.id": "kbak-replay-probe", "enable.auto.commit": False})
    try:
        out = {}
        for topic, p in partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            out[(topic, p)] = max(int(high), 0)
        return out
    finally:
        consumer.close()


def reconcile(
    selection: Selection, options: ReplayOptions, ckpt: Checkpoint, conf: dict[str, str], groups: GroupMapper | None
) -> int:
    """Mark as delivered the records found on the target past the checkpoint; returns how many."""
    if options.repartition is not None:
        return 0
    feeders: dict[str, list[str]] = {}
    for source in selection.topics:
        feeders.setdefault(options.target_topic(source), []).append(source)
    todo = {}
    for key, pos in sorted(ckpt.targets.items()):
        topic, _, part = key.rpartition(":")
        sources = feeders.get(topic, [])
        start = pos.get("next") if pos.get("next") is not None else pos.get("start")
        if len(sources) == 1 and start is not None:
            todo[(topic, int(part))] = start
    found = 0
    for (topic, part), landed in sorted(_read(conf, todo).items()):
        pos = ckpt.targets[f"{topic}:{part}"]
        known = pos.get("next")
        src = (feeders[topic][0], part)
        if not landed:
            continue
        expected = [_comparable(r, options.offset_headers) for r in selection.rows_after(src, len(landed))]
        if not expected:
            continue
        first = 0 if known is not None else _index(landed, expected[0])
        if first is None:
            continue
        k = 0
        while k < len(expected) and first + k < len(landed) and landed[first + k][1] == expected[k][1]:
            k += 1
        if k == 0 or (known is None and first + k != len(landed)):
            continue  # without a recorded position, only a run of our records up to the end is provably ours
        last_source = expected[k - 1][0]
        _last, extra = ckpt.progress.get(src, (None, []))
        ckpt.progress[src] = (last_source, [o for o in extra if o > last_source])
        pos["next"] = landed[first + k - 1][0] + 1
        if groups is not None:
            for j in range(k):
                groups.delivered(src, expected[j][0], (topic, part), landed[first + j][0])
        found += k
    if found:
        ckpt.records += found
        if groups is not None:
            ckpt.groups = groups.state()
        ckpt.save()
    return found


def _comparable(row: dict, offset_headers: bool) -> tuple[int, tuple]:
    headers = tuple((h["key"], h["value"]) for h in row["headers"])
    if offset_headers:
        headers += tuple(provenance(row["topic"], row["partition"], row["offset"], row["ts_ms"], row["source_cluster"]))
    return row["offset"], (row["key"], row["value"], headers, row["ts_ms"])


def _index(landed: list[tuple[int, tuple]], record: tuple[int, tuple]) -> int | None:
    for i, (_offset, body) in enumerate(landed):
        if body == record[1]:
            return i
    return None


def _read(conf: dict[str, str], starts: dict[tuple[str, int], int]) -> dict[tuple[str, int], list[tuple[int, tuple]]]:
    """Records of target partitions from their start offsets to their ends: (offset, (key, value,
    headers, timestamp)) per partition, read with one consumer."""
    out: dict[tuple[str, int], list[tuple[int, tuple]]] = {tp: [] for tp in starts}
    if not starts:
        return out
    consumer = Consumer(
        {
            **conf,
            "group.id": "kbak-replay-reconcile",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in starts.items()])
        open_ = set(starts)
        deadline = time.monotonic() + READ_TIMEOUT_S
        while open_ and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.5):
                err = m.error()
                tp = (m.topic(), m.partition())
                if err is None:
                    out[tp].append((m.offset(), (m.key(), m.value(), tuple(m.headers() or ()), m.timestamp()[1])))
                elif err.code() == KafkaError._PARTITION_EOF:
                    open_.discard(tp)
                else:
                    raise KbakError(f"reading {tp[0]}[{tp[1]}] on the target to reconcile failed: {err.str()}")
        if open_:
            raise KbakError(f"reading the target to reconcile took over {READ_TIMEOUT_S:g}s")
        return out
    finally:
        consumer.close()
