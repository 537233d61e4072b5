"""``kbak ingest``: consume Kafka topics into the archive, exactly once, as a snapshot or continuously.

Threads: the main thread consumes and builds Arrow columns (Python-bound); one committer thread
encodes Parquet, uploads and commits (mostly outside the GIL), so the two overlap. A queue of one
flush bounds memory. Progress is read from, and only from, the Delta log (see ``commit.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from pipeline import custody
from pipeline.core.errors import KbakError
from pipeline.core.kafka import client_config, cluster_metadata, compile_patterns, select_topics
from pipeline.core.metrics import IngestMetrics
from pipeline.core.progress import Reporter, Snapshot
from pipeline.core.ranges import partition_ranges
from pipeline.core.signals import stop_on_signals
from pipeline.core.storage import Lake
from pipeline.core.table import app_id, open_table
from pipeline.ingest.batch import messages_to_table, only_partitions, without_partitions
from pipeline.ingest.commit import CommitResult, commit_records, ensure_table
from pipeline.schemas.registry import RegistryOptions

TP = tuple[str, int]


@dataclass
class IngestOptions:
    bootstrap_servers: str
    lake: Lake
    topics: list[str]
    exclude: list[str] = field(default_factory=list)
    once: bool = False
    group_id: str | None = None
    source_cluster_id: str | None = None
    backup_id: str | None = None
    compression_level: int = 3
    flush_records: int = 500_000
    flush_bytes: int = 16 << 20
    flush_seconds: float = 30.0
    target_file_size: int = 128 << 20
    kafka_settings: dict[str, str] = field(default_factory=dict)
    metrics_port: int | None = None
    topic_refresh_seconds: float = 10.0
    snapshot_groups: bool = False
    object_lock_days: int | None = None
    idle_timeout_seconds: float = 60.0  # --once: give up when no partition is assigned this long
    schema_registry: RegistryOptions | None = None  # keep the schemas of wire-format records
    schema_registry_optional: bool = False  # archive records whose schema the registry cannot give now


@dataclass
class IngestSummary:
    backup_id: str
    lake: str
    source_cluster: str
    topics: list[str]
    records: int = 0
    bytes_written: int = 0
    commits: int = 0
    first_version: int | None = None
    last_version: int | None = None
    duration_s: float = 0.0
    partitions: dict[str, dict[int, dict]] = field(default_factory=dict)
    gaps: list[dict] = field(default_factory=list)
    schemas: dict | None = None  # with --schema-registry: kept, unknown and unkept schema ids

    def as_dict(self) -> dict:
        return {
            "backup_id": self.backup_id,
            "lake": self.lake,
            "source_cluster": self.source_cluster,
            "topics": self.topics,
            "records": self.records,
            "bytes_written": self.bytes_written,
            "commits": self.commits,
            "versions": [self.first_version, self.last_version],
            "duration_s": round(self.duration_s, 3),
            "records_per_s": round(self.records / self.duration_s, 1) if self.duration_s else None,
            "partitions": {t: {str(p): v for p, v in ps.items()} for t, ps in self.partitions.items()},
            "gaps": self.gaps,
            **({"schemas": self.schemas} if self.schemas is not None else {}),
        }


def default_group_id(lake: Lake) -> str:
    """One consumer group per lake, so unrelated ingests never split each other's partitions."""
    return "kbak-" + hashlib.sha1(lake.uri.encode()).hexdigest()[:12]


def ingest(
    options: IngestOptions,
    reporter: Reporter | None = None,
    stop: threading.Event | None = None,
    metrics: IngestMetrics | None = None,
) -> IngestSummary:
    """Run an ingest; returns its summary. Raises KbakError with a one-line message on failure."""
    metrics = metrics or IngestMetrics()
    if options.metrics_port is not None:
        metrics.serve(options.metrics_port)
    try:
        summary = _Run(options, reporter or Reporter(), stop or threading.Event(), metrics).execute()
    except BaseException:
        metrics.backups.labels(outcome="failure").inc()
        raise
    metrics.backups.labels(outcome="success").inc()
    return summary


@dataclass
class _Flush:
    table: pa.Table
    expected: dict[TP, int | None]
    generation: dict[TP, int]
    gaps: list[dict]
    schemas: list[dict] = field(default_factory=list)  # kept schema documents this commit lists


class _Committer(threading.Thread):
    """Writes and commits flushes in order; reports each result (or the error) back."""

    def __init__(self, run: _Run) -> None:
        super().__init__(name="kbak-committer", daemon=True)
        self.run_ = run
        self.jobs: queue.Queue[_Flush | None] = queue.Queue(maxsize=1)
        self.results: queue.Queue[tuple[_Flush, CommitResult | BaseException]] = queue.Queue()

    def run(self) -> None:
        r = self.run_
        dt = None
        while True:
            job = self.jobs.get()
            try:
                if job is None:
                    return
                try:
                    # Opened here, so a failure is reported like any commit failure (the thread
                    # must never die silently: the main thread would then wait on it forever).
                    dt = dt or open_table(r.lake)
                    res: CommitResult | BaseException = commit_records(
                        r.lake,
                        dt,
                        job.table,
                        job.expected,
                        source_cluster=r.cluster,
                        backup_id=r.summary.backup_id,
                        gaps=job.gaps,
                        schemas=job.schemas,
                        compression_level=r.opts.compression_level,
                        target_file_size=r.opts.target_file_size,
                    )
                    if r.opts.object_lock_days and isinstance(res, CommitResult) and res.version is not None:
                        from pipeline.custody.hold import lock_commit

                        lock_commit(r.lake, res, r.opts.object_lock_days)
                except BaseException as exc:  # reported to the main thread, which stops the run
                    res = exc
                self.results.put((job, res))
            finally:
                self.jobs.task_done()


class _Run:
    def __init__(self, opts: IngestOptions, reporter: Reporter, stop: threading.Event, metrics: IngestMetrics):
        self.opts, self.reporter, self.stop, self.metrics = opts, reporter, stop, metrics
        self.lake = opts.lake
        self.started = time.monotonic()
        self.conf = client_config(opts.bootstrap_servers, opts.kafka_settings)
        if not opts.topics:
            raise KbakError("--topics is required (one or more regular expressions)")
        self.include = compile_patterns(opts.topics, "--topics")
        self.exclude = compile_patterns(opts.exclude, "--exclude")
        if opts.object_lock_days:
            from pipeline.custody.hold import lock_configuration

            lock_configuration(self.lake)  # fail before consuming anything if the bucket cannot lock
        md = cluster_metadata(self.conf)
        self.cluster = opts.source_cluster_id or md.cluster_id or opts.bootstrap_servers
        self.topics = select_topics(md.topics, self.include, self.exclude)
        self.partitions = {t: sorted(md.topics[t].partitions) for t in self.topics}
        if not self.topics:
            raise KbakError(
                f"no topic on {opts.bootstrap_servers} matches --topics {opts.topics}"
                + (f" minus --exclude {opts.exclude}" if opts.exclude else "")
            )
        self.dt = ensure_table(self.lake)
        self.schemas = None
        if opts.schema_registry is not None:
            from pipeline.ingest.schemas import SchemaKeeper

            self.schemas = SchemaKeeper(self.lake, opts.schema_registry, opts.schema_registry_optional)
        custody.seal(self.lake, self.dt)  # recover manifests a killed run left unsealed
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.summary = IngestSummary(
            backup_id=opts.backup_id or f"ingest-{stamp}-{uuid.uuid4().hex[:6]}",
            lake=self.lake.uri,
            source_cluster=self.cluster,
            topics=self.topics,
        )
        # Per-partition state, owned by the main thread.
        self.assigned: set[TP] = set()
        self.expected: dict[TP, int | None] = {}
        self.generation: dict[TP, int] = defaultdict(int)
        self.last_seen: dict[TP, int] = {}
        self.end: dict[TP, int] = {}
        self.done: set[TP] = set()
        self.pending_gaps: dict[TP, dict] = {}
        self.buffer: list[pa.Table] = []
        self.buffer_rows = 0
        self.buffer_bytes = 0
        self.buffer_since = time.monotonic()
        self.snap = Snapshot(label=f"ingest {self.summary.backup_id} (consumed)")

    # -- the loop -------------------------------------------------------------------------

    def execute(self) -> IngestSummary:
        consumer = Consumer(
            {
                **self.conf,
                "group.id": self.opts.group_id or default_group_id(self.lake),
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                # Prefetch little (bounded RSS) but refill at once: librdkafka's default waits a whole
                # second (fetch.queue.backoff.ms=1000) after the queue filled, which starved the loop.
                "fetch.max.bytes": 32 << 20,
                "max.partition.fetch.bytes": 4 << 20,
                "queued.max.messages.kbytes": 16 << 10,
                "fetch.queue.backoff.ms": 10,
                "socket.connection.setup.timeout.ms": 10000,
                # Short enough that a dead worker's partitions move on quickly (and that group
                # joins on the test broker take seconds, not tens of seconds); -X overrides.
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
                **self.opts.kafka_settings,
            }
        )
        self.consumer = consumer
        self.committer = _Committer(self)
        self.committer.start()
        try:
            with stop_on_signals(self.stop):
                if self.opts.once and not self.opts.group_id:
                    # A snapshot with no group named takes every partition itself: no group
                    # membership, so members of an earlier killed run cannot hold partitions it
                    # would then skip.
                    everything = [TopicPartition(t, p) for t in self.topics for p in self.partitions[t]]
                    self._on_assign(consumer, everything)
                else:
                    consumer.subscribe(
                        self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
                    )
                self._loop()
                self._flush()
                self._wait_committer()
        finally:
            self.committer.jobs.put(None)
            self.committer.join(timeout=120)
            with contextlib.suppress(Exception):
                consumer.close()
            if self.schemas is not None:
                self.schemas.close()
                self.summary.schemas = self.schemas.stats.as_dict()
            self.reporter.close()
        if self.opts.snapshot_groups:
            from pipeline.ingest.groups import snapshot_groups

            own = frozenset({self.opts.group_id or default_group_id(self.lake)})
            snapshot_groups(self.lake, self.conf, self.topics, self.cluster, self.summary.backup_id, skip=own)
        self.summary.duration_s = time.monotonic() - self.started
        return self.summary

    def _loop(self) -> None:
        next_refresh = time.monotonic() + self.opts.topic_refresh_seconds
        idle_since = time.monotonic()
        while not self.stop.is_set():
            self._drain_results()
            if self.opts.once:
                if self.assigned:
                    idle_since = time.monotonic()
                    if self.done >= self.assigned:
                        return
                elif time.monotonic() - idle_since > self.opts.idle_timeout_seconds:
                    raise KbakError("no partition was assigned to this worker; is the group busy elsewhere?")
            elif time.monotonic() >= next_refresh:
                self._refresh_topics()
                next_refresh = time.monotonic() + self.opts.topic_refresh_seconds
            # Never read past --flush-records, so a flush holds at most that many records.
            room = max(self.opts.flush_records - self.buffer_rows, 1)
            msgs = self.consumer.consume(num_messages=min(5_000, room), timeout=0.2)
            if msgs:
                self._take(msgs)
            if self._should_flush():
                self._flush()
            self._report()

    def _take(self, msgs: list) -> None:
        errors = [m for m in msgs if m.error() is not None]
        if errors:
            msgs = [m for m in msgs if m.error() is None]
            for m in errors:
                err = m.error()
                tp = (m.topic(), m.partition())
                if err.code() == KafkaError._PARTITION_EOF:
                    self.end[tp] = min(self.end.get(tp, m.offset()), m.offset())
                    if self.opts.once and tp in self.assigned:
                        self._mark_done(tp)
                elif err.fatal():
                    raise KbakError(f"Kafka error: {err.str()}")
                else:
                    self.metrics.errors.labels(kind="kafka").inc()
        if not msgs:
            return
        now = datetime.now(UTC)
        ingested_at = now.replace(microsecond=now.microsecond // 1000 * 1000)  # ms, like Delta stats
        table = messages_to_table(msgs, self.cluster, ingested_at)
        if self.schemas is not None:
            self.schemas.observe(table)  # before buffering: no record is committed ahead of its schema
        last = table.group_by(["topic", "partition"]).aggregate([("offset", "max")]).to_pylist()
        for row in last:
            tp = (row["topic"], row["partition"])
            self.last_seen[tp] = row["offset_max"]
            if tp not in self.end:
                _low, high = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
                if high is not None and high >= 0:
                    self.end[tp] = high
            if self.opts.once and tp in self.end and row["offset_max"] >= self.end[tp] - 1:
                self._mark_done(tp)
        self.buffer.append(table)
        self.buffer_rows += table.num_rows
        self.buffer_bytes += table.nbytes
        self.snap.records += table.num_rows
        self.snap.bytes += table.nbytes

    def _mark_done(self, tp: TP) -> None:
        if tp not in self.done:
            self.done.add(tp)
            self.consumer.pause([TopicPartition(*tp)])

    def _should_flush(self) -> bool:
        if not self.buffer_rows:
            self.buffer_since = time.monotonic()
            return False
        o = self.opts
        return (
            self.buffer_rows >= o.flush_records
            or self.buffer_bytes >= o.flush_bytes
            or time.monotonic() - self.buffer_since >= o.flush_seconds
        )

    def _flush(self) -> None:
        if not self.buffer_rows:
            return
        table = pa.concat_tables(self.buffer)
        self.buffer, self.buffer_rows, self.buffer_bytes = [], 0, 0
        self.buffer_since = time.monotonic()
        expected: dict[TP, int | None] = {}
        generation: dict[TP, int] = {}
        gaps = []
        for r in partition_ranges(table):
            tp = (r["topic"], r["partition"])
            expected[tp] = self.expected.get(tp)
            generation[tp] = self.generation[tp]
            self.expected[tp] = r["last_offset"]
            if tp in self.pending_gaps:
                gaps.append(self.pending_gaps.pop(tp))
        schemas = self.schemas.take_pending() if self.schemas is not None else []
        self.committer.jobs.put(_Flush(table, expected, generation, gaps, schemas))

    def _wait_committer(self) -> None:
        self.committer.jobs.join()
        self._drain_results()

    def _drain_results(self) -> None:
        while True:
            try:
                job, res = self.committer.results.get_nowait()
            except queue.Empty:
                return
            if isinstance(res, BaseException):
                self.metrics.errors.labels(kind="commit").inc()
                raise res
            self._apply(job, res)

    def _apply(self, job: _Flush, res: CommitResult) -> None:
        s = self.summary
        if res.version is not None:
            s.commits += 1
            s.records += res.records
            s.bytes_written += res.bytes
            s.first_version = res.version if s.first_version is None else s.first_version
            s.last_version = res.version
            s.gaps.extend(job.gaps)
            self.metrics.commits.inc()
            self.metrics.last_commit.set(time.time())
            self.metrics.backup_size.set(s.bytes_written)
            for r in partition_ranges(only_partitions(job.table, res.committed)):
                part = s.partitions.setdefault(r["topic"], {}).setdefault(r["partition"], {"records": 0})
                part["records"] += r["records"]
                part.setdefault("first_offset", r["first_offset"])
                part["last_offset"] = r["last_offset"]
                self.metrics.records.labels(topic=r["topic"]).inc(r["records"])
            for f in res.files:
                self.metrics.bytes.labels(topic=f.partition_values["topic"]).inc(f.size)
            offsets = [TopicPartition(t, p, o + 1) for (t, p), o in res.committed.items() if (t, p) in self.assigned]
            if offsets:  # for lag monitoring only; the Delta log is the source of truth
                with contextlib.suppress(Exception):
                    self.consumer.commit(offsets=offsets, asynchronous=True)
        elif job.schemas and self.schemas is not None:
            self.schemas.requeue(job.schemas)
        for tp, have in res.rejected.items():
            if job.generation.get(tp) != self.generation[tp] or tp not in self.assigned:
                continue  # already re-positioned since this flush was cut
            self._reposition(tp, have)

    def _reposition(self, tp: TP, have: int | None) -> None:
        """Another writer moved this partition on: continue from what the log says."""
        self.generation[tp] += 1
        self.expected[tp] = have
        self.done.discard(tp)
        self.end.pop(tp, None)
        self._drop_buffered({tp})
        target = TopicPartition(tp[0], tp[1], have + 1 if have is not None else OFFSET_BEGINNING)
        self.consumer.resume([target])
        self.consumer.seek(target)

    def _drop_buffered(self, tps: set[TP]) -> None:
        if not self.buffer:
            return
        kept = [without_partitions(t, tps) for t in self.buffer]
        self.buffer = [t for t in kept if t.num_rows]
        self.buffer_rows = sum(t.num_rows for t in self.buffer)
        self.buffer_bytes = sum(t.nbytes for t in self.buffer)

    def _report(self) -> None:
        now = time.monotonic()
        if now - getattr(self, "_last_report", 0.0) < 1.0:
            return
        self._last_report = now
        lag: dict[str, int] = defaultdict(int)
        for tp in self.assigned:
            _low, high = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
            pos = self.last_seen.get(tp, self.expected.get(tp))
            if high is not None and high >= 0:
                behind = max(high - ((pos + 1) if pos is not None else 0), 0)
                lag[tp[0]] += behind
                self.metrics.lag.labels(topic=tp[0], partition=str(tp[1])).set(behind)
        self.snap.lag = dict(lag)
        self.reporter.update(self.snap)

    def _refresh_topics(self) -> None:
        try:
            md = cluster_metadata(self.conf, timeout=5)
        except KbakError:
            self.metrics.errors.labels(kind="metadata").inc()
            return
        topics = select_topics(md.topics, self.include, self.exclude)
        if topics and topics != self.topics:
            self.topics = topics
            self.summary.topics = topics
            self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)

    # -- rebalance callbacks (run inside consume(), on the main thread) ---------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.dt.update_incremental()
        for p in partitions:
            tp = (p.topic, p.partition)
            have = self.dt.transaction_version(app_id(self.cluster, *tp))
            self.expected[tp] = have
            self.generation[tp] += 1
            self.done.discard(tp)
            self.end.pop(tp, None)
            start = have + 1 if have is not None else 0
            p.offset = start if have is not None else OFFSET_BEGINNING
            low, _high = consumer.get_watermark_offsets(p, timeout=10)
            if low is not None and low > start:
                # Deleted by the source's retention before kbak saw it: a recorded gap, not a skip.
                self.pending_gaps[tp] = {
                    "topic": tp[0],
                    "partition": tp[1],
                    "first_missing": start,
                    "last_missing": low - 1,
                    "reason": "deleted_before_archive",
                }
            self.assigned.add(tp)
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Commit what we hold before giving partitions away, so the next owner starts after it.
        self._flush()
        self._wait_committer()
        for p in partitions:
            self.assigned.discard((p.topic, p.partition))
            self.done.discard((p.topic, p.partition))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(p.topic, p.partition) for p in partitions}
        self._drop_buffered(lost)
        self.assigned -= lost
        self.done -= lost
