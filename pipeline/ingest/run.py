"""``kbak ingest``: consume Kafka topics into the archive, exactly once, as a snapshot or continuously.

Threads: the main thread consumes and builds Arrow columns (Python-bound); the committer
(``committer.py``) encodes and uploads a flush on one thread while it commits the one before on
another, so the three overlap. Progress is read from, and only from, the Delta log (see ``commit.py``).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from pipeline import custody
from pipeline.core import profile
from pipeline.core.errors import KbakError, UsageError
from pipeline.core.hotpath import fewer_gc_passes
from pipeline.core.kafka import (
    ONCE_CONSUMER,
    client_config,
    cluster_metadata,
    compile_patterns,
    consumer_for,
    group_members,
    select_topics,
)
from pipeline.core.metrics import IngestMetrics
from pipeline.core.progress import Reporter, Snapshot
from pipeline.core.ranges import partition_ranges
from pipeline.core.schema import TP
from pipeline.core.signals import stop_on_signals
from pipeline.core.table import app_id
from pipeline.ingest.batch import messages_to_table, only_partitions
from pipeline.ingest.buffer import Buffer
from pipeline.ingest.commit import CommitResult, ensure_table
from pipeline.ingest.committer import Committer, Flush
from pipeline.ingest.options import IngestOptions, default_group_id
from pipeline.ingest.partitions import Partitions
from pipeline.ingest.snapshot import behind, describe, snapshot_ends
from pipeline.ingest.summary import IngestSummary
from pipeline.ingest.writer import MIN_TARGET_FILE_SIZE


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
        with fewer_gc_passes():
            summary = _Run(options, reporter or Reporter(), stop or threading.Event(), metrics).execute()
    except BaseException:
        metrics.backups.labels(outcome="failure").inc()
        raise
    metrics.backups.labels(outcome="success").inc()
    return summary


class _Run:
    def __init__(self, opts: IngestOptions, reporter: Reporter, stop: threading.Event, metrics: IngestMetrics):
        self.opts, self.reporter, self.stop, self.metrics = opts, reporter, stop, metrics
        self.lake = opts.lake
        self.started = time.monotonic()
        self.group_id = opts.group_id or default_group_id(self.lake)
        if opts.target_file_size < MIN_TARGET_FILE_SIZE:
            raise UsageError(
                f"--target-file-size {opts.target_file_size} is too small: at least {MIN_TARGET_FILE_SIZE} (1 MiB)",
            )
        self.conf = client_config(opts.bootstrap_servers, opts.kafka_settings)
        # Made first: librdkafka checks its settings as a whole here, before the lake is touched.
        # -X settings override the consumer defaults, as decoded by client_config (@file secrets read).
        overrides = {k: self.conf[k] for k in opts.kafka_settings if k in self.conf}
        self.consumer = consumer_for(self.conf, self.group_id, {**(ONCE_CONSUMER if opts.once else {}), **overrides})
        try:
            self._prepare()
        except BaseException:
            self.consumer.close()
            raise

    def _prepare(self) -> None:
        opts = self.opts
        if not opts.topics:
            raise KbakError("--topics is required (one or more regular expressions)")
        self.include = compile_patterns(opts.topics, "--topics")
        self.exclude = compile_patterns(opts.exclude, "--exclude")
        if opts.object_lock_days:
            from pipeline.custody.hold import lock_configuration

            lock_configuration(self.lake)  # fail before consuming anything if the bucket cannot lock
        md = cluster_metadata(self.conf, timeout=opts.connect_timeout_s)
        self.cluster = opts.source_cluster_id or md.cluster_id or opts.bootstrap_servers
        self.topics = select_topics(md.topics, self.include, self.exclude)
        self.partitions = {t: sorted(md.topics[t].partitions) for t in self.topics}
        if not self.topics:
            raise KbakError(
                f"no topic on {opts.bootstrap_servers} matches --topics {opts.topics}"
                + (f" minus --exclude {opts.exclude}" if opts.exclude else "")
            )
        self.lake.check_writable()  # a refused write (policy, role) stops the run before any real one
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
        self.state = Partitions()  # owned by the main thread
        self.buffer = Buffer()
        self.snap = Snapshot(label=f"ingest {self.summary.backup_id} (consumed)")
        self._last_report = 0.0
        self.ends: dict[TP, tuple[int, int]] = {}  # --once: (low, end) per partition, seen at the start
        self.waiting_since: float | None = None
        self.next_check = 0.0
        self.last_lag: dict[TP, int] = {}
        self.ever_assigned = False  # continuous: for the no-assignment warning
        self.unassigned_since: float | None = None
        self.warned_unassigned: float | None = None

    # -- the loop -------------------------------------------------------------------------

    def execute(self) -> IngestSummary:
        consumer = self.consumer
        self.committer = Committer(
            self.lake,
            source_cluster=self.cluster,
            backup_id=self.summary.backup_id,
            compression_level=self.opts.compression_level,
            target_file_size=self.opts.target_file_size,
            object_lock_days=self.opts.object_lock_days,
        )
        self.committer.start()
        try:
            with stop_on_signals(self.stop):
                if self.opts.once:
                    selected = [(t, p) for t in self.topics for p in self.partitions[t]]
                    self.ends = snapshot_ends(self.conf, selected, self.stop)
                if self.opts.once and not self.opts.group_id:
                    # A snapshot with no group named takes every partition itself: no group
                    # membership, so members of an earlier killed run cannot hold partitions it
                    # would then skip.
                    everything = [TopicPartition(t, p) for t in self.topics for p in self.partitions[t]]
                    self._on_assign(consumer, everything)
                else:
                    self._subscribe()
                self._loop()
                self._flush()
                self._wait_committer()
                if self.opts.once and self.stop.is_set():
                    lag = behind(self.dt, self.cluster, self.ends, self.conf)
                    if lag:  # what was read is committed; the snapshot itself is not complete
                        raise KbakError(f"interrupted before the snapshot was complete: {describe(lag)}")
        finally:
            self.committer.jobs.put(None)
            self.committer.join(timeout=120)
            with contextlib.suppress(Exception):
                self._report(final=True)  # the last line shows the end state, not one from a second ago
            with contextlib.suppress(Exception):
                consumer.close()
            if self.schemas is not None:
                self.schemas.close()
                self.summary.schemas = self.schemas.stats.as_dict()
            self.reporter.close()
        if self.opts.snapshot_groups:
            from pipeline.ingest.groups import snapshot_groups

            own = frozenset({self.group_id})
            snapshot_groups(self.lake, self.conf, self.topics, self.cluster, self.summary.backup_id, skip=own)
        if not self.opts.once and not self.ever_assigned:
            self.summary.warnings.append(f"no partition was assigned to this worker (consumer group {self.group_id})")
        self.summary.duration_s = time.monotonic() - self.started
        return self.summary

    def _subscribe(self) -> None:
        self.consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def _loop(self) -> None:
        next_refresh = time.monotonic() + self.opts.topic_refresh_seconds
        while not self.stop.is_set():
            self._drain_results()
            if self.opts.once:
                if self._snapshot_complete():
                    return
            else:
                self._watch_assignment()
                if time.monotonic() >= next_refresh:
                    self._refresh_topics()
                    next_refresh = time.monotonic() + self.opts.topic_refresh_seconds
            # Never read past --flush-records, so a flush holds at most that many records.
            room = max(self.opts.flush_records - self.buffer.rows, 1)
            with profile.stage("consume"):
                msgs = self.consumer.consume(num_messages=min(5_000, room), timeout=0.2)
            if msgs:
                self._take(msgs)
            if self.buffer.due(self.opts.flush_records, self.opts.flush_bytes, self.opts.flush_seconds):
                self._flush()
            self._report()

    def _snapshot_complete(self) -> bool:
        """--once: True when the table holds every selected partition to its end seen at the start.

        While this worker still has assigned partitions to read, it reads. Then it waits (polling,
        so the group can hand it more partitions) until the log shows the rest archived, by it or
        by the group's other members, for at most ``snapshot_timeout_seconds``.
        """
        if any(not self.state[tp].done for tp in self.state.assigned()):
            self.waiting_since = None
            return False
        now = time.monotonic()
        if now < self.next_check:
            return False
        self.next_check = now + 1.0
        self._flush()
        self._wait_committer()
        first = self.waiting_since is None
        if first:
            self.waiting_since = now
        lag = behind(self.dt, self.cluster, self.ends)
        if not lag:
            return True
        timed_out = now - self.waiting_since >= self.opts.snapshot_timeout_seconds
        if first or timed_out or lag != self.last_lag:
            self.last_lag = lag
            lag = behind(self.dt, self.cluster, self.ends, self.conf)  # one fetch: is a record really missing?
            if not lag:
                return True
        if timed_out:
            group = f" members of group {self.group_id} still hold them or" if self.opts.group_id else ""
            raise KbakError(
                f"snapshot incomplete after waiting {self.opts.snapshot_timeout_seconds:g}s (--snapshot-timeout): "
                f"{describe(lag)} not archived to the end seen at the start;{group} reading them failed "
                "(a rerun continues from what is archived)"
            )
        return False

    def _watch_assignment(self) -> None:
        """Continuous: say so when the group leaves this worker with nothing to read for too long."""
        if self.state.assigned():
            self.ever_assigned, self.unassigned_since = True, None
            return
        now = time.monotonic()
        if self.unassigned_since is None:
            self.unassigned_since = now
            return
        waited = now - self.unassigned_since
        if waited < self.opts.unassigned_warning_seconds or self.warned_unassigned == self.unassigned_since:
            return
        self.warned_unassigned = self.unassigned_since
        members = group_members(self.conf, self.group_id)
        who = (
            f"members: {', '.join(members)}"
            if members
            else "the admin API could not list its members"
            if members is None
            else "the admin API lists no members"
        )
        text = (
            f"no partition assigned to this worker for {waited:.0f}s by consumer group {self.group_id} ({who}); "
            "other members hold them all, or the group is stuck"
        )
        self.metrics.errors.labels(kind="unassigned").inc()
        self.reporter.warn(text)
        if text not in self.summary.warnings:
            self.summary.warnings.append(text)

    def _take(self, msgs: list) -> None:
        errors = [m for m in msgs if m.error() is not None]
        if errors:
            msgs = [m for m in msgs if m.error() is None]
            for m in errors:
                err = m.error()
                tp = (m.topic(), m.partition())
                if err.code() == KafkaError._PARTITION_EOF:
                    s = self.state[tp]
                    s.end = m.offset() if s.end is None else min(s.end, m.offset())
                    if self.opts.once and s.assigned:
                        self._mark_done(tp)
                elif err.fatal():
                    raise KbakError(f"Kafka error: {err.str()}")
                else:
                    self.metrics.errors.labels(kind="kafka").inc()
        if not msgs:
            return
        now = datetime.now(UTC)
        ingested_at = now.replace(microsecond=now.microsecond // 1000 * 1000)  # ms, like Delta stats
        with profile.stage("build"):
            table = messages_to_table(msgs, self.cluster, ingested_at)
        if self.schemas is not None:
            self.schemas.observe(table)  # before buffering: no record is committed ahead of its schema
        last = table.group_by(["topic", "partition"]).aggregate([("offset", "max")]).to_pylist()
        for row in last:
            tp = (row["topic"], row["partition"])
            s = self.state[tp]
            s.last_seen = row["offset_max"]
            if s.end is None:
                _low, high = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
                if high is not None and high >= 0:
                    s.end = high
            if self.opts.once and s.end is not None and row["offset_max"] >= s.end - 1:
                self._mark_done(tp)
        self.buffer.add(table)
        self.snap.records += table.num_rows
        self.snap.bytes += table.nbytes

    def _mark_done(self, tp: TP) -> None:
        if not self.state[tp].done:
            self.state[tp].done = True
            self.consumer.pause([TopicPartition(*tp)])

    def _flush(self) -> None:
        with profile.stage("flush"):
            table = self.buffer.take()
            if table is None:
                return
            ranges = partition_ranges(table)
        expected: dict[TP, int | None] = {}
        generation: dict[TP, int] = {}
        gaps = []
        for r in ranges:
            tp = (r["topic"], r["partition"])
            s = self.state[tp]
            expected[tp] = s.expected
            generation[tp] = s.generation
            s.expected = r["last_offset"]
            if s.gap is not None:
                gaps.append(s.gap)
                s.gap = None
        schemas = self.schemas.take_pending() if self.schemas is not None else []
        with profile.stage("wait committer"):  # the queue holds one flush: time here is time behind it
            self.committer.jobs.put(Flush(table, expected, generation, gaps, schemas, ranges))

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

    def _apply(self, job: Flush, res: CommitResult) -> None:
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
            # Every partition of the flush committed (the rule): its ranges are known, no filtering copy.
            ranges = job.ranges if not res.rejected else partition_ranges(only_partitions(job.table, res.committed))
            for r in ranges:
                part = s.partitions.setdefault(r["topic"], {}).setdefault(r["partition"], {"records": 0})
                part["records"] += r["records"]
                part.setdefault("first_offset", r["first_offset"])
                part["last_offset"] = r["last_offset"]
                self.metrics.records.labels(topic=r["topic"]).inc(r["records"])
            for f in res.files:
                self.metrics.bytes.labels(topic=f.partition_values["topic"]).inc(f.size)
            mine = self.state.assigned()
            offsets = [TopicPartition(t, p, o + 1) for (t, p), o in res.committed.items() if (t, p) in mine]
            if offsets:  # for lag monitoring only; the Delta log is the source of truth
                with contextlib.suppress(Exception):
                    self.consumer.commit(offsets=offsets, asynchronous=True)
        elif job.schemas and self.schemas is not None:
            self.schemas.requeue(job.schemas)
        for tp, have in res.rejected.items():
            state = self.state[tp]
            if job.generation.get(tp) != state.generation or not state.assigned:
                continue  # already re-positioned since this flush was cut
            self._reposition(tp, have)

    def _reposition(self, tp: TP, have: int | None) -> None:
        """Another writer moved this partition on: continue from what the log says."""
        self.state[tp].reset(have)
        self.buffer.drop({tp})
        target = TopicPartition(tp[0], tp[1], have + 1 if have is not None else OFFSET_BEGINNING)
        self.consumer.resume([target])
        self.consumer.seek(target)

    def _report(self, final: bool = False) -> None:
        now = time.monotonic()
        if now - self._last_report < 1.0 and not final:
            return
        self._last_report = now
        lag: dict[str, int] = defaultdict(int)
        for tp in self.state.assigned():
            _low, high = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
            s = self.state[tp]
            pos = s.last_seen if s.last_seen is not None else s.expected
            if high is not None and high >= 0:
                behind = max(high - ((pos + 1) if pos is not None else 0), 0)
                lag[tp[0]] += behind
                self.metrics.lag.labels(topic=tp[0], partition=str(tp[1])).set(behind)
        self.snap.lag = dict(lag)
        self.metrics.assigned.set(len(self.state.assigned()))
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
            self.partitions = {t: sorted(md.topics[t].partitions) for t in topics}
            self._subscribe()

    # -- rebalance callbacks (run inside consume(), on the main thread) ---------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.dt.update_incremental()
        for p in partitions:
            tp = (p.topic, p.partition)
            s = self.state[tp]
            have = self.dt.transaction_version(app_id(self.cluster, *tp))
            s.reset(have)
            s.last_seen = None
            start = have + 1 if have is not None else 0
            p.offset = start if have is not None else OFFSET_BEGINNING
            low, _high = consumer.get_watermark_offsets(p, timeout=10)
            if low is not None and low > start:
                # Deleted by the source's retention before kbak saw it: a recorded gap, not a skip.
                s.gap = {
                    "topic": tp[0],
                    "partition": tp[1],
                    "first_missing": start,
                    "last_missing": low - 1,
                    "reason": "deleted_before_archive",
                }
            s.assigned = True
        self.ever_assigned = self.ever_assigned or bool(partitions)
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Commit what we hold before giving partitions away, so the next owner starts after it.
        self._flush()
        self._wait_committer()
        self.state.unassign((p.topic, p.partition) for p in partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(p.topic, p.partition) for p in partitions}
        self.buffer.drop(lost)
        self.state.unassign(lost)
