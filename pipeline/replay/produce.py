"""Producing selected rows to the target: idempotent, ``acks=all``, every delivery report checked.

Per-record Python work is the cost that matters, so each batch's columns become Python lists once,
headers are flattened and sliced per record, and the delivery callback does almost nothing: each
target partition is a ``_Slot`` that counts its reports (an idempotent producer reports a
partition's records in the order they were produced) and remembers failures by position. At each
checkpoint tick the counted reports are matched to the runs of source records produced to that
slot, which updates per-source-partition progress, target statistics and group positions.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import KafkaError, KafkaException, Producer

from pipeline.core.schema import TP
from pipeline.replay.checkpoint import Progress
from pipeline.replay.offsets import GroupMapper
from pipeline.replay.partitioner import Partitioner
from pipeline.replay.ratelimit import RateLimiter
from pipeline.replay.summary import PartitionStats
from pipeline.replay.target import TargetTopic

CHUNK = 5_000  # records between checks of stop / failure / rate / checkpoint
PRODUCER_DEFAULTS = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "batch.size": 1 << 20,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 50_000,
    "queue.buffering.max.kbytes": 32 << 10,  # with the batch in hand, bounds memory whatever the window
}
OFFSET_HEADER_PREFIX = "kbak.source."
PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)  # dropped by kbak on a stop: not delivered
STOP_FLUSH_S = 3.0  # after a stop request (or a dead target), how long outstanding deliveries may still land
_BROKER_TROUBLE = (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE)


class _Slot:
    """One target partition: the runs of source records produced to it, and the reports received."""

    __slots__ = ("key", "runs", "seen", "settled", "failed", "first", "last", "offsets", "trouble")

    def __init__(self, key: TP, trouble: threading.Event, keep_offsets: bool) -> None:
        self.key = key
        self.runs: deque[list] = deque()  # [source tp, offsets, sizes, stamps, position]
        self.seen = 0  # delivery reports received
        self.settled = 0  # reports matched to records
        self.failed: dict[int, KafkaError] = {}  # report index -> error (purged ones: not delivered, no fault)
        self.first: int | None = None  # target offsets of the first / last delivered record
        self.last: int | None = None
        self.offsets: list[int] | None = [] if keep_offsets else None  # every target offset (group mapping)
        self.trouble = trouble

    def report(self, err, msg) -> None:
        if err is None:
            self.last = msg.offset()
            if self.first is None:
                self.first = self.last
        else:
            self.failed[self.seen] = err
            if err.code() not in PURGED:
                self.trouble.set()
        self.seen += 1

    def report_offsets(self, err, msg) -> None:
        self.offsets.append(msg.offset() if err is None else -1)
        self.report(err, msg)


class Sender:
    """Produces record batches; ``settle()`` turns delivery reports into progress and statistics."""

    def __init__(
        self,
        conf: dict[str, str],
        targets: dict[str, TargetTopic],
        progress: Progress,
        *,
        repartition: str | None,
        offset_headers: bool,
        limiter: RateLimiter,
        groups: GroupMapper | None,
        stop: threading.Event,
        max_records: int | None = None,
        on_chunk: Callable[[], None] = lambda: None,
        delivery_timeout_s: float = 30.0,
    ) -> None:
        self.stop = stop  # set from outside (a signal): stop, and stop waiting for deliveries soon
        self.trouble = threading.Event()  # set from inside: a refused record, a failed delivery, a fatal error
        self.failure: str | None = None
        self.broker_error: str | None = None  # the last "broker down" kind of error, to name in a timeout
        self.target = conf.get("bootstrap.servers", "?")
        settings = {**PRODUCER_DEFAULTS, "message.timeout.ms": round(delivery_timeout_s * 1000), **conf}
        self.delivery_timeout_s = _timeout_s(settings)
        self.producer = Producer({**settings, "error_cb": self._on_error})
        self.targets = targets
        self.progress = progress
        self.partitioner = Partitioner(repartition)
        self.offset_headers = offset_headers
        self.limiter = limiter
        self.groups = groups
        self.max_records = max_records
        self.on_chunk = on_chunk
        self.slots: dict[TP, _Slot] = {}
        self.stats: dict[TP, PartitionStats] = {}
        self.produced = 0
        self.delivered = 0
        self.delivered_bytes = 0

    def _slot(self, topic: str, partition: int) -> _Slot:
        slot = self.slots.get((topic, partition))
        if slot is None:
            slot = self.slots[(topic, partition)] = _Slot((topic, partition), self.trouble, self.groups is not None)
        return slot

    def _on_error(self, err: KafkaError) -> None:
        # Transient errors (a broker reconnecting) are retried by librdkafka until the delivery timeout;
        # the last one is named if deliveries then time out. A fatal one ends the run.
        if err.code() in _BROKER_TROUBLE:
            self.broker_error = err.str()
        if err.fatal() and self.failure is None:
            self.failure = f"the producer hit a fatal error: {err.str()}"
            self.trouble.set()

    # -- producing ---------------------------------------------------------------------------

    def send(self, batch: pa.RecordBatch) -> bool:
        """Produce one batch (rows ordered by source partition and offset).

        Returns False once the run must stop (stop requested, a failure, ``max_records`` reached).
        """
        n = batch.num_rows
        if n == 0:
            return not self._should_stop()
        topics = batch.column("topic").to_pylist()
        parts = batch.column("partition").to_pylist()
        offsets = batch.column("offset").to_pylist()
        stamps = batch.column("ts_ms").to_pylist()
        keys = batch.column("key").to_pylist()
        values = batch.column("value").to_pylist()
        sizes = batch.column("size").to_pylist()
        hoff, pairs = _flat_headers(batch.column("headers"))
        clusters = batch.column("source_cluster").to_pylist() if self.offset_headers else None
        start = 0
        while start < n:
            if self._should_stop():
                return False
            end = min(n, start + self.limiter.chunk(CHUNK))
            if self.max_records is not None:
                end = min(end, start + self.max_records - self.produced)
            if self.limiter.active:
                self._wait(self.limiter.delay(end - start, sum(sizes[start:end])))
                if self._should_stop():
                    return False
            for (topic, part), a, b in _runs(topics, parts, start, end):
                done = self._produce_run(topic, part, a, b, offsets, stamps, keys, values, sizes, hoff, pairs, clusters)
                self.produced += done - a
                if done < b:
                    return False
            start = end
            self.producer.poll(0)
            self.on_chunk()
        return not self._should_stop()

    def _produce_run(self, topic, part, a, b, offsets, stamps, keys, values, sizes, hoff, pairs, clusters) -> int:
        """Produce rows [a, b) of one source partition; returns the index of the first row not produced."""
        target = self.targets[topic]
        if self.partitioner.mode is not None or clusters is not None:
            return self._produce_each(
                target, topic, part, a, b, offsets, stamps, keys, values, sizes, hoff, pairs, clusters
            )
        # The common case (partition kept, no added headers): nothing per record but produce().
        name, produce, base = target.name, self.producer.produce, hoff[0]
        slot = self._slot(name, part)
        cb = slot.report if slot.offsets is None else slot.report_offsets
        i = a
        try:
            while i < b:
                try:
                    for i in range(i, b):  # noqa: B020 - resumes at the record a full queue refused
                        produce(
                            name,
                            values[i],
                            keys[i],
                            part,
                            cb,
                            timestamp=stamps[i],
                            headers=pairs[hoff[i] - base : hoff[i + 1] - base],
                        )
                    i = b
                except BufferError:  # the queue is full (a slow or dead target): wait, unless told to stop
                    self.producer.poll(0.05)
                    if self._should_stop():
                        break
        except KafkaException as exc:
            self._refused(topic, part, offsets[i], exc, sizes[i])
        if i > a:
            slot.runs.append([(topic, part), offsets[a:i], sizes[a:i], stamps[a:i], 0])
            self.progress.produced((topic, part), offsets[a:i])
        return i

    def _produce_each(
        self, target, topic, part, a, b, offsets, stamps, keys, values, sizes, hoff, pairs, clusters
    ) -> int:
        """The general case: a target partition chosen per record, and/or provenance headers added."""
        name, count, base = target.name, target.partitions, hoff[0]
        keep_partition = self.partitioner.mode is None
        slot = self._slot(name, part) if keep_partition else None
        i = a
        try:
            for i in range(a, b):  # noqa: B007 - i is read after the loop when produce() raises
                headers = pairs[hoff[i] - base : hoff[i + 1] - base]
                if clusters is not None:
                    headers = [*headers, *provenance(topic, part, offsets[i], stamps[i], clusters[i])]
                partition = part if keep_partition else self.partitioner(name, count, part, keys[i])
                if not keep_partition:
                    slot = self._slot(name, partition)
                cb = slot.report if slot.offsets is None else slot.report_offsets
                while True:
                    try:
                        produce = self.producer.produce
                        produce(name, values[i], keys[i], partition, cb, timestamp=stamps[i], headers=headers)
                        break
                    except BufferError:
                        self.producer.poll(0.05)
                        if self._should_stop():
                            raise _Full from None
                if not keep_partition:
                    slot.runs.append([(topic, part), [offsets[i]], [sizes[i]], [stamps[i]], 0])
                    self.progress.produced((topic, part), [offsets[i]])
            i = b
        except _Full:
            pass  # row i was not produced
        except KafkaException as exc:
            self._refused(topic, part, offsets[i], exc, sizes[i])
        if keep_partition and i > a:
            slot.runs.append([(topic, part), offsets[a:i], sizes[a:i], stamps[a:i], 0])
            self.progress.produced((topic, part), offsets[a:i])
        return i

    def _refused(self, topic: str, part: int, offset: int, exc: KafkaException, size: int) -> None:
        err = exc.args[0]
        self.failure = f"producing {topic}[{part}] offset {offset} failed: {err.str()}{too_large_hint(err, size)}"
        self.trouble.set()

    def _should_stop(self) -> bool:
        if self.max_records is not None and self.produced >= self.max_records:
            return True
        return self.stop.is_set() or self.trouble.is_set() or self.failure is not None

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not (self.stop.is_set() or self.trouble.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.producer.poll(min(left, 0.1))
            self.on_chunk()

    def finish(self) -> None:
        """Wait for the delivery reports of what was produced, in short steps (librdkafka blocks in C).

        Normally until all have come (bounded by the delivery timeout). After a stop request, or once
        deliveries time out (the target is gone), only for ``STOP_FLUSH_S`` more: then what is left is
        purged and reported as not delivered, so a run ends within seconds whatever the target does.
        """
        grace: float | None = None
        while len(self.producer) > 0:
            now = time.monotonic()
            if grace is None and (self.stop.is_set() or self._target_gone()):
                grace = now + STOP_FLUSH_S
            if grace is not None and now >= grace:
                self.producer.purge(in_queue=True, in_flight=True, blocking=False)
                end = time.monotonic() + STOP_FLUSH_S
                while len(self.producer) > 0 and time.monotonic() < end:
                    self.producer.poll(0.1)  # serves the purged messages' reports
                break
            self.producer.flush(0.2)
            self.on_chunk()
        self.producer.poll(0)
        self.settle()

    def _target_gone(self) -> bool:
        return any(e.code() == KafkaError._MSG_TIMED_OUT for slot in self.slots.values() for e in slot.failed.values())

    # -- matching delivery reports to records ------------------------------------------------

    def _delivery_failure(self, src: TP, offset: int, size: int, dst: TP, err: KafkaError) -> str:
        record = f"{src[0]}[{src[1]}] offset {offset}"
        if err.code() == KafkaError._MSG_TIMED_OUT:
            why = f": {self.broker_error}" if self.broker_error else ""
            return (
                f"the target {self.target} did not take {record} within the delivery timeout "
                f"({self.delivery_timeout_s:g}s, --delivery-timeout){why}"
            )
        return f"delivery of {record} to {dst[0]}[{dst[1]}] failed: {err.str()}{too_large_hint(err, size)}"

    def settle(self) -> None:
        """Match the reports counted so far to the records produced, slot by slot."""
        for slot in self.slots.values():
            if slot.seen > slot.settled:
                self._settle(slot)

    def _settle(self, slot: _Slot) -> None:
        stats = self.stats.get(slot.key)
        if stats is None:
            stats = self.stats[slot.key] = PartitionStats()
        todo = slot.seen - slot.settled
        while todo:
            run = slot.runs[0]
            src, offs, sizes, stamps, pos = run
            take = min(todo, len(offs) - pos)
            first_index = slot.settled
            bad = [j - first_index for j in slot.failed if first_index <= j < first_index + take]
            good = range(pos, pos + take)
            if bad:
                real = [j for j in bad if slot.failed[first_index + j].code() not in PURGED]
                if self.failure is None and real:
                    j = real[0]
                    self.failure = self._delivery_failure(
                        src, offs[pos + j], sizes[pos + j], slot.key, slot.failed[first_index + j]
                    )
                dropped = set(bad)
                good = [k for k in good if k - pos not in dropped]
            delivered = [offs[k] for k in good] if bad else offs[pos : pos + take]
            if delivered:
                self.progress.delivered_many(src, delivered)
                n = len(delivered)
                size = sum(sizes[k] for k in good) if bad else sum(sizes[pos : pos + take])
                ts = [stamps[k] for k in good] if bad else stamps[pos : pos + take]
                stats.add_many(n, size, min(ts), max(ts))
                self.delivered += n
                self.delivered_bytes += size
            if self.groups is not None:
                for k in range(take):
                    target_offset = slot.offsets[first_index + k]
                    if target_offset >= 0:
                        self.groups.delivered(src, offs[pos + k], slot.key, target_offset)
            slot.settled += take
            todo -= take
            if pos + take == len(offs):
                slot.runs.popleft()
            else:
                run[4] = pos + take
        stats.first_offset, stats.last_offset = slot.first, slot.last


class _Full(Exception):
    """The producer queue stayed full until the run was told to stop."""


def too_large_hint(err: KafkaError, size: int) -> str:
    """For "message size too large": the settings to raise (kbak's producer and the target topic)."""
    if err.code() != KafkaError.MSG_SIZE_TOO_LARGE:
        return ""
    return (
        f" (the record's key+value is {size} bytes; raise the producer's limit with -X message.max.bytes=N "
        f"and, on the target, the topic's max.message.bytes (or the broker's message.max.bytes))"
    )


def _timeout_s(settings: dict) -> float:
    """The delivery timeout librdkafka will apply: the last of the alias pair the settings give."""
    chosen = [v for k, v in settings.items() if k in ("message.timeout.ms", "delivery.timeout.ms")][-1]
    return int(chosen) / 1000


def provenance(topic: str, partition: int, offset: int, ts_ms: int, cluster: str) -> list[tuple[str, bytes]]:
    """``--offset-headers``: where a record came from, as UTF-8 text (numbers in decimal)."""
    p = OFFSET_HEADER_PREFIX
    return [
        (f"{p}topic", topic.encode()),
        (f"{p}partition", str(partition).encode()),
        (f"{p}offset", str(offset).encode()),
        (f"{p}timestamp", str(ts_ms).encode()),
        (f"{p}cluster", cluster.encode()),
    ]


def _flat_headers(column: pa.Array) -> tuple[list[int], list[tuple[str, bytes | None]]]:
    """list<struct<key, value>> as list offsets and one flat list of (key, value) tuples.

    Record i's headers are ``pairs[offsets[i] - offsets[0] : offsets[i + 1] - offsets[0]]``: order,
    duplicates and null values kept.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    flat = column.flatten()
    # Header names repeat from record to record: one str per distinct name, shared by every tuple
    # (a new str per header was, after produce() itself, the largest per-record cost of a replay).
    names = pc.dictionary_encode(flat.field("key"))
    keys = map(names.dictionary.to_pylist().__getitem__, names.indices.to_pylist())
    pairs = list(zip(keys, flat.field("value").to_pylist(), strict=True))
    return column.offsets.to_pylist(), pairs


def _runs(topics: list[str], parts: list[int], start: int, end: int):
    """Consecutive rows of one source partition in [start, end): ((topic, partition), first, stop)."""
    i = start
    while i < end:
        topic, part = topics[i], parts[i]
        j = i + 1
        while j < end and parts[j] == part and topics[j] == topic:
            j += 1
        yield (topic, part), i, j
        i = j
