"""``replay()``: validate everything, then stream the selection to the target and account for it.

Order matters for "bad input loses nothing": options, checkpoint, table version, topics, ``--where``,
group snapshots, target reachability and partition counts are all checked before the first record
is produced. After that, every stop (a failed delivery, a signal, ``--max-records``) waits for the
outstanding delivery reports and writes the checkpoint before returning or raising.
"""

from __future__ import annotations

import contextlib
import threading
import time

from pipeline.core.errors import Interrupted, KbakError, first_line
from pipeline.core.hotpath import fewer_gc_passes, system_arrow_pool
from pipeline.core.kafka import client_config
from pipeline.core.progress import Reporter, Snapshot
from pipeline.core.signals import interrupt_on_signals, stop_on_signals
from pipeline.replay.checkpoint import Checkpoint, Progress
from pipeline.replay.offsets import GroupMapper, commit_group
from pipeline.replay.options import ReplayOptions
from pipeline.replay.produce import Sender
from pipeline.replay.ratelimit import RateLimiter
from pipeline.replay.reconcile import reconcile, target_ends
from pipeline.replay.select import Selection
from pipeline.replay.summary import ReplaySummary
from pipeline.replay.target import TargetMismatch, check_targets

CHECKPOINT_EVERY_S = 0.5


class ReplayFailed(KbakError):
    """A replay that stopped before the end; ``summary`` says exactly what was delivered."""

    def __init__(self, message: str, summary: ReplaySummary) -> None:
        super().__init__(message)
        self.summary = summary


class ReplayInterrupted(ReplayFailed, Interrupted):
    """A replay stopped by SIGINT/SIGTERM; ``summary`` says exactly what was delivered (and checkpointed)."""


def fingerprint(o: ReplayOptions) -> dict:
    """What defines a replay's records and their placement: a checkpoint only resumes the same replay."""
    return {
        "lake": o.lake.uri,
        "as_of": None if o.as_of is None else str(o.as_of),
        "topics": sorted(set(o.topics)),
        "partitions": sorted(set(o.partitions)),
        "from_ms": o.from_ms,
        "to_ms": o.to_ms,
        "key": None if o.key is None else o.key.hex(),
        "where": o.where,
        "offsets": [[r.partition, r.start, r.end] for r in o.offsets],
        "topic_map": dict(sorted(o.topic_map.items())),
        "repartition": o.repartition,
        "offset_headers": o.offset_headers,
        # only when set, so checkpoints written before the option existed still resume
        **({"schema_registry_target": o.schema_registry_target.display} if o.schema_registry_target else {}),
    }


def replay(
    options: ReplayOptions, reporter: Reporter | None = None, stop: threading.Event | None = None
) -> ReplaySummary:
    """Run (or, with ``dry_run``, plan) a replay. Raises KbakError before producing on bad input, and
    ReplayFailed (carrying the summary of what was delivered) when a started run stops early."""
    options.validate()
    # until producing starts, SIGINT/SIGTERM end the run (130)
    with interrupt_on_signals(), fewer_gc_passes(), system_arrow_pool():
        return _replay(options, reporter, stop)


def _replay(options: ReplayOptions, reporter: Reporter | None, stop: threading.Event | None) -> ReplaySummary:
    started = time.monotonic()
    reporter = reporter or Reporter()
    stop = stop or threading.Event()
    ckpt = _checkpoint(options)
    if ckpt is not None and ckpt.complete and not options.again:
        return _already_delivered(options, ckpt, started)
    committed, snapshots = ({}, {})
    if options.restore_groups:
        from pipeline.ingest.groups import group_offsets  # imports the ingest package: only when asked

        committed, snapshots = group_offsets(options.lake, options.restore_groups, options.backup_id)
    conf = client_config(options.bootstrap_servers, options.kafka_settings) if options.bootstrap_servers else {}
    sel = Selection(options, version=ckpt.table_version if ckpt else None, resume=ckpt.progress if ckpt else {})
    try:
        summary = ReplaySummary(
            lake=options.lake.uri,
            table_version=sel.version,
            target=options.bootstrap_servers,
            dry_run=options.dry_run,
            checkpoint=str(ckpt.path) if ckpt else None,
        )
        if options.dry_run:
            plan = sel.plan(with_bytes=True)
            summary.plan = [p.as_dict() for p in plan]
            summary.records = sum(p.records for p in plan)
            summary.bytes = sum(p.bytes or 0 for p in plan)
            if conf:
                check_targets(conf, options, _needed(plan), sel.archived, create=False)
            summary.duration_s = time.monotonic() - started
            return summary
        rewriter = None
        if options.schema_registry_target is not None:  # registers the kept schemas before producing anything
            from pipeline.replay.schema_ids import IdRewriter

            rewriter = IdRewriter.register(options.lake, options.schema_registry_target)
        try:  # file statistics first (no scan); only if they say no, the exact count of selected partitions
            targets = check_targets(conf, options, sel.partition_bound(), sel.archived, create=options.create_topics)
        except TargetMismatch:
            exact = _needed(sel.plan())
            targets = check_targets(conf, options, exact, sel.archived, create=options.create_topics)
        groups = (
            GroupMapper(committed, ckpt.groups if ckpt else None, one_to_one=options.repartition is None)
            if committed
            else None
        )
        if ckpt is not None:
            ckpt.table_version = sel.version
            if not ckpt.complete and ckpt.targets:
                summary.reconciled = reconcile(sel, options, ckpt, conf, groups)
                if summary.reconciled:  # read again without what the killed run delivered
                    sel.close()
                    sel = Selection(options, version=ckpt.table_version, resume=ckpt.progress)
        batches = sel.prefetched()  # reading starts now, alongside the last checks below
        if ckpt is not None and options.repartition is None:
            _record_target_starts(conf, ckpt, targets)
        if ckpt is not None:
            ckpt.save()  # before producing: a lake that refuses writes is found now (see Checkpoint.default)
            summary.checkpoint, summary.checkpoint_note = ckpt.path, ckpt.note
        summary.skipped_by_checkpoint = ckpt.records if ckpt else 0
        summary.delivered = dict(ckpt.progress) if ckpt else {}
        summary.created_topics = sorted(t.name for t in targets.values() if t.created)
        run = _Run(options, batches, conf, targets, ckpt, groups, snapshots, summary, reporter, stop)
        run.rewriter = rewriter
        run.started = started  # the summary's duration covers the whole command, checks included
        return run.execute()
    finally:
        sel.close()


def _checkpoint(options: ReplayOptions) -> Checkpoint | None:
    """``--checkpoint FILE``, else the default one (needs a target: it is part of its name)."""
    fp = fingerprint(options)
    if options.checkpoint:
        return Checkpoint.open(options.checkpoint, fp, fresh=options.again)
    if not options.bootstrap_servers:
        return None
    return Checkpoint.default(options.lake, fp, options.bootstrap_servers, fresh=options.again)


def _already_delivered(options: ReplayOptions, ckpt: Checkpoint, started: float) -> ReplaySummary:
    """A rerun of a replay that completed: nothing is produced (``--again`` asks for a fresh copy)."""
    return ReplaySummary(
        lake=options.lake.uri,
        table_version=ckpt.table_version if ckpt.table_version is not None else -1,
        target=options.bootstrap_servers,
        dry_run=options.dry_run,
        checkpoint=ckpt.path,
        skipped_by_checkpoint=ckpt.records,
        delivered=dict(ckpt.progress),
        already_delivered_at=ckpt.completed_at or "an unrecorded time",
        duration_s=time.monotonic() - started,
    )


def _record_target_starts(conf: dict[str, str], ckpt: Checkpoint, targets: dict) -> None:
    """Before writing to a target partition for the first time, note where it ends (for reconcile)."""
    new = [(t.name, p) for t in targets.values() for p in range(t.partitions) if f"{t.name}:{p}" not in ckpt.targets]
    if not new:
        return
    for (topic, p), end in target_ends(conf, new).items():
        ckpt.targets[f"{topic}:{p}"] = {"start": end, "next": None}
    ckpt.save()


def _needed(plan) -> dict[str, int]:
    """Per source topic with selected rows: highest selected partition + 1."""
    needed: dict[str, int] = {}
    for p in plan:
        needed[p.topic] = max(needed.get(p.topic, 0), p.partition + 1)
    return needed


class _Run:
    def __init__(self, options, batches, conf, targets, ckpt, groups, snapshots, summary, reporter, stop) -> None:
        self.options, self.batches, self.conf, self.ckpt = options, batches, conf, ckpt
        self.summary, self.reporter, self.stop, self.snapshots = summary, reporter, stop, snapshots
        self.started = time.monotonic()
        self.progress = Progress(ckpt.progress if ckpt else None)
        self.groups = groups
        self.snap = Snapshot(label="replay")
        self.rewriter = None  # an IdRewriter with --schema-registry-target
        self._last_save = 0.0
        self.sender = Sender(
            conf,
            targets,
            self.progress,
            repartition=options.repartition,
            offset_headers=options.offset_headers,
            limiter=RateLimiter(options.rate_records, options.rate_bytes),
            groups=self.groups,
            stop=stop,
            max_records=options.max_records,
            on_chunk=self._tick,
            delivery_timeout_s=options.delivery_timeout_s,
        )

    def execute(self) -> ReplaySummary:
        s, sender = self.summary, self.sender
        error: BaseException | None = None
        with stop_on_signals(self.stop):
            try:
                with contextlib.closing(self.batches) as batches:
                    for batch in batches:
                        if not sender.send(self.rewriter.apply(batch) if self.rewriter else batch):
                            break
            except BaseException as exc:  # reading failed: still account for what was delivered
                error = exc
            finally:
                sender.finish()
                self._account(final=True)
        self.reporter.close()
        if isinstance(error, KeyboardInterrupt):
            self.stop.set()
        elif error is not None:
            s.status, s.error = "failed", first_line(error)
            raise ReplayFailed(f"replay stopped: {s.error}; {self._delivered_text()}", s) from error
        if sender.failure is not None:
            s.status, s.error = "failed", sender.failure
            raise ReplayFailed(f"replay stopped: {sender.failure}; {self._delivered_text()}", s)
        if self.stop.is_set():
            s.status = "interrupted"
            raise ReplayInterrupted(f"replay interrupted; {self._delivered_text()}", s)
        if self.options.max_records is not None and sender.produced >= self.options.max_records:
            s.status = "stopped"
        else:
            s.status = "complete"
            if self.ckpt is not None:
                self.ckpt.complete = True
                self.ckpt.save()
            try:
                self._restore_groups()
            except KbakError as exc:
                s.status, s.error = "failed", str(exc)
                raise ReplayFailed(f"every record was delivered, but {exc}", s) from None
        return s

    def _restore_groups(self) -> None:
        if self.groups is None:
            return
        for group in self.options.restore_groups:
            offsets = self.groups.offsets(group)
            commit_group(self.conf, group, offsets)
            self.summary.groups[group] = self.groups.report(group, self.snapshots[group])

    def _delivered_text(self) -> str:
        where = f"checkpoint {self.ckpt.path}" if self.ckpt else "the summary"
        return f"{self.sender.delivered} records were delivered and are recorded in {where}"

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last_save < CHECKPOINT_EVERY_S:
            return
        self._last_save = now
        self._account(final=False)
        self.snap.records, self.snap.bytes = self.sender.delivered, self.sender.delivered_bytes
        self.reporter.update(self.snap)

    def _account(self, final: bool) -> None:
        s, sender = self.summary, self.sender
        sender.settle()
        s.records, s.bytes = sender.delivered, sender.delivered_bytes
        s.targets = sender.stats
        s.delivered = self.progress.state()
        if final:
            s.duration_s = time.monotonic() - self.started
            if self.rewriter is not None:
                s.schema_ids = self.rewriter.as_dict()
        if self.ckpt is not None:
            self.ckpt.progress = s.delivered
            self.ckpt.records = s.skipped_by_checkpoint + sender.delivered
            if self.groups is not None:
                self.ckpt.groups = self.groups.state()
            for key, stats in sender.stats.items():
                if stats.last_offset is not None:
                    self.ckpt.targets.setdefault(f"{key[0]}:{key[1]}", {"start": None})["next"] = stats.last_offset + 1
            self.ckpt.save()
