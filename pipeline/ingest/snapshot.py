"""``--once``: where a snapshot ends, and whether the table holds all of it.

A snapshot's completeness is a property of the table, not of one worker's assignment: other
members of the group may hold some partitions (a killed worker's until its session expires), so
the run checks the Delta log's application transactions against the end offsets seen at the start.

The ends come from fetches, not from ListOffsets: the Tansu test broker answers ListOffsets
"latest" with the last batch's base offset + 1, while a fetch's partition EOF carries the true end
on every broker. On a transactional topic the end is past a commit marker that is never a record,
so "archived to end - 1" is not required: a partition is complete when no committed record lies
between what the table holds and the end (one fetch from there tells).
"""

from __future__ import annotations

import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError, TopicPartition
from deltalake import DeltaTable

from pipeline.core.errors import KbakError
from pipeline.core.schema import TP
from pipeline.core.table import committed_offsets

PROBE_TIMEOUT_S = 15.0


def _probe(
    conf: dict,
    starts: dict[TP, int],
    first_record: bool = False,
    timeout: float = PROBE_TIMEOUT_S,
    stop: threading.Event | None = None,
) -> dict:
    """Fetch each partition from ``starts``: its EOF offset, or (``first_record``) the first record's.

    Returns ``{tp: ("record" | "eof", offset)}``; partitions that answered neither in time are absent.
    """
    consumer = Consumer(
        {
            **conf,
            "group.id": f"kbak-probe-{uuid.uuid4().hex[:8]}",  # never joins: assign() only, no commits
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 1 << 20,
            "max.partition.fetch.bytes": 64 << 10,
            # At a partition's end the broker holds a fetch this long before answering "nothing new"
            # (librdkafka's default: 500 ms); the probe is there to see that answer.
            "fetch.wait.max.ms": 10,
        }
    )
    out: dict[TP, tuple[str, int]] = {}
    try:
        consumer.assign([TopicPartition(t, p, max(o, 0)) for (t, p), o in starts.items()])
        deadline = time.monotonic() + timeout
        while len(out) < len(starts) and time.monotonic() < deadline and not (stop and stop.is_set()):
            for m in consumer.consume(num_messages=1000, timeout=0.05):
                tp = (m.topic(), m.partition())
                if tp in out or tp not in starts:
                    continue
                err = m.error()
                if err is None:
                    if not first_record:
                        continue  # reading to the end: records are skipped over
                    out[tp] = ("record", m.offset())
                elif err.code() == KafkaError._PARTITION_EOF:
                    out[tp] = ("eof", m.offset())
                else:
                    continue
                consumer.pause([TopicPartition(*tp)])
    finally:
        consumer.close()
    return out


def snapshot_ends(conf: dict, partitions: list[TP], stop: threading.Event | None = None) -> dict[TP, tuple[int, int]]:
    """``{tp: (low, end)}``: each partition's first offset and its end, as fetches see them now."""
    probe = Consumer({**conf, "group.id": f"kbak-probe-{uuid.uuid4().hex[:8]}"})
    try:
        marks = {tp: probe.get_watermark_offsets(TopicPartition(*tp), timeout=10) for tp in partitions}
    finally:
        probe.close()
    # Start one offset before ListOffsets' "latest": the last record on Kafka, the last batch on Tansu.
    starts = {tp: max(high - 1, low) for tp, (low, high) in marks.items()}
    seen = _probe(conf, starts, stop=stop)
    if stop is not None and stop.is_set():
        raise KbakError("interrupted before the snapshot started")
    missing = [tp for tp in partitions if tp not in seen]
    if missing:
        raise KbakError(f"cannot read the end of {_names(missing)} within {PROBE_TIMEOUT_S:g}s")
    return {tp: (marks[tp][0], seen[tp][1]) for tp in partitions}


def behind(dt: DeltaTable, cluster: str, ends: dict[TP, tuple[int, int]], conf: dict | None = None) -> dict[TP, int]:
    """Partitions the table does not hold to their snapshot end, with how many offsets they lack.

    Without ``conf`` only the log is read (cheap, may count a trailing commit marker as missing);
    with it, partitions that look short are fetched once to see whether a record is really missing.
    """
    dt.update_incremental()
    have = committed_offsets(dt, cluster, list(ends))
    lag: dict[TP, int] = {}
    for tp, (low, end) in ends.items():
        nxt = max(have[tp] + 1 if tp in have else 0, low)
        if nxt < end:
            lag[tp] = end - nxt
    if conf is None or not lag:
        return lag
    first = _probe(conf, {tp: end - lag[tp] for tp, (_low, end) in ends.items() if tp in lag}, first_record=True)
    # Reaching EOF first means nothing a read_committed reader can see is left (only commit markers,
    # aborted records, or on Kafka an open transaction's records past the stable offset).
    return {tp: n for tp, n in lag.items() if _record_before(first.get(tp), ends[tp][1])}


def _record_before(seen: tuple[str, int] | None, end: int) -> bool:
    """Whether the probe found a record before ``end`` (or could not tell: then assume so)."""
    return seen is None or (seen[0] == "record" and seen[1] < end)


def _names(tps) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(tps))


def describe(lag: dict[TP, int]) -> str:
    return ", ".join(f"{t}[{p}] ({n} behind)" for (t, p), n in sorted(lag.items()))
