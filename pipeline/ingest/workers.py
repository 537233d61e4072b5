"""``kbak ingest --workers N``: N ingest processes on this host, in one consumer group.

One process is bound by the GIL to about one core of Python work (consuming, building Arrow
columns); N processes (``spawn``: deltalake must not be forked) share the group's partitions
like N replicas on N hosts would, each committing with its own per-partition fences, so exactly
once holds as it does for separate hosts. This parent starts them, relays SIGINT/SIGTERM as a stop
to all, shows one progress display and serves one metrics endpoint summing theirs, and returns one
summary. A worker that fails stops the others; the error names it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline.core.errors import KbakError, UsageError
from pipeline.core.metrics import IngestMetrics
from pipeline.core.progress import Reporter, Snapshot
from pipeline.core.signals import stop_on_signals
from pipeline.ingest.options import IngestOptions, default_group_id
from pipeline.ingest.run import ingest
from pipeline.ingest.summary import IngestSummary

REPORT_EVERY_S = 0.5


def worker_count(value: int | str | None) -> int:
    """``--workers`` / ``workers:``: a positive number, or ``auto`` for the CPU count."""
    if value is None:
        return 1
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return os.cpu_count() or 1
        try:
            value = int(value)
        except ValueError:
            raise UsageError(f"--workers must be a positive number or 'auto', not {value!r}") from None
    if value < 1:
        raise UsageError(f"--workers must be at least 1, not {value}")
    return value


def ingest_workers(
    options: IngestOptions,
    workers: int,
    reporter: Reporter | None = None,
    stop: threading.Event | None = None,
) -> IngestSummary:
    """Run ``workers`` ingest processes in one consumer group; their summaries merged into one.

    ``options.metrics_port`` serves the workers' metrics summed (and this run's outcome).
    """
    if workers <= 1:
        return ingest(options, reporter, stop)
    reporter = reporter or Reporter()
    stop = stop or threading.Event()
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    each = replace(
        options,
        group_id=options.group_id or default_group_id(options.lake),
        backup_id=options.backup_id or f"ingest-{stamp}-{uuid.uuid4().hex[:6]}",
        metrics_port=None,
    )
    relay = _Relay(workers, each.backup_id)
    registry = CollectorRegistry()
    registry.register(relay)
    outcomes = Counter(
        "kafka_backup_backups", "Ingest runs by outcome (compliance-docs name)", ["outcome"], registry=registry
    )
    if options.metrics_port is not None:
        start_http_server(options.metrics_port, registry=registry)
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(i, each, events), name=f"kbak-ingest-{i}", daemon=True)
        for i in range(workers)
    ]
    summaries: dict[int, dict] = {}
    failure: str | None = None
    failure_kind: type[KbakError] = KbakError
    halted = False
    silent_since: dict[int, float] = {}  # exited without a word yet: its last event may still be in the pipe
    try:
        with stop_on_signals(stop):
            for p in procs:
                p.start()
            while len(summaries) < workers and failure is None:
                if stop.is_set() and not halted:
                    halted = _halt(procs, summaries)
                try:
                    event = events.get(timeout=0.2)
                except queue.Empty:
                    now = time.monotonic()
                    for i, p in enumerate(procs):
                        exited = i not in summaries and p.exitcode is not None
                        if exited and now - silent_since.setdefault(i, now) > 2.0:
                            if halted and p.exitcode < 0:  # stopped before it could report: nothing committed
                                summaries[i] = {"summary": None, "progress": relay.progress.get(i, {})}
                            else:
                                failure = f"ingest worker {i} exited with code {p.exitcode} before reporting"
                    continue
                kind, i, body = event
                if kind == "progress":
                    relay.progress[i] = body
                    reporter.update(relay.snapshot())
                elif kind == "warn":
                    reporter.warn(body)
                elif kind == "done":
                    summaries[i] = body
                    relay.progress[i] = body["progress"]
                elif kind == "failed":
                    failure, failure_kind = f"ingest worker {i}: {body[0]}", body[1]
    finally:
        _halt(procs, summaries)
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
                p.join()
        with contextlib.suppress(Exception):
            events.close()
        reporter.update(relay.snapshot())
        reporter.close()
    if failure is not None:
        outcomes.labels(outcome="failure").inc()
        raise failure_kind(failure)
    outcomes.labels(outcome="success").inc()
    parts = [summaries[i]["summary"] for i in sorted(summaries) if summaries[i]["summary"] is not None]
    summary = merge_summaries(parts, each.backup_id, options.lake.uri)
    summary.duration_s = time.monotonic() - started
    return summary


def merge_summaries(parts: list[dict], backup_id: str, lake: str) -> IngestSummary:
    """One summary from the workers' ``IngestSummary.as_dict()`` outputs."""
    first = parts[0] if parts else {}
    out = IngestSummary(
        backup_id=backup_id,
        lake=lake,
        source_cluster=first.get("source_cluster", ""),
        topics=sorted({t for p in parts for t in p["topics"]}),
    )
    for p in parts:
        out.records += p["records"]
        out.bytes_written += p["bytes_written"]
        out.commits += p["commits"]
        lo, hi = p["versions"]
        if lo is not None:
            out.first_version = lo if out.first_version is None else min(out.first_version, lo)
            out.last_version = hi if out.last_version is None else max(out.last_version, hi)
        for topic, partitions in p["partitions"].items():
            for part, info in partitions.items():
                have = out.partitions.setdefault(topic, {}).get(int(part))
                if have is None:
                    out.partitions[topic][int(part)] = dict(info)
                else:  # moved between workers during the run: both archived a range of it
                    have["records"] += info["records"]
                    have["first_offset"] = min(have["first_offset"], info["first_offset"])
                    have["last_offset"] = max(have["last_offset"], info["last_offset"])
        out.gaps.extend(p["gaps"])
        out.warnings.extend(w for w in p.get("warnings", []) if w not in out.warnings)
    return out


class _Relay(Collector):
    """The workers' latest progress and metric samples; a Prometheus collector of their sums."""

    def __init__(self, workers: int, backup_id: str) -> None:
        self.workers = workers
        self.started = time.monotonic()
        self.label = f"ingest {backup_id} ({workers} workers, consumed)"
        self.progress: dict[int, dict] = {}

    def snapshot(self) -> Snapshot:
        snap = Snapshot(label=self.label, started=self.started)
        for p in self.progress.values():
            snap.records += p["records"]
            snap.bytes += p["bytes"]
            for topic, n in p["lag"].items():
                snap.lag[topic] = snap.lag.get(topic, 0) + n
        return snap

    def collect(self):
        # Counters add up across workers; so do gauges of disjoint things (lag per partition is
        # reported by its owner only, backup size per worker); the last commit time is the latest.
        sums: dict[tuple[str, str, tuple], float] = {}
        helps: dict[str, tuple[str, str]] = {}
        for p in list(self.progress.values()):
            for name, kind, doc, labels, value in p.get("metrics", []):
                key = (name, kind, tuple(sorted(labels.items())))
                helps[name] = (kind, doc)
                if name == "kbak_last_commit_timestamp_seconds":
                    sums[key] = max(sums.get(key, 0.0), value)
                else:
                    sums[key] = sums.get(key, 0.0) + value
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for (name, kind, labels), value in sorted(sums.items()):
            label_names = [k for k, _v in labels]
            family = families.get(name)
            if family is None:
                doc = helps[name][1]
                family = (
                    CounterMetricFamily(name, doc, labels=label_names)
                    if kind == "counter"
                    else GaugeMetricFamily(name, doc, labels=label_names)
                )
                families[name] = family
            family.add_metric([v for _k, v in labels], value)
        yield from families.values()


# -- in each worker process ---------------------------------------------------------------


class _QueueReporter(Reporter):
    """A worker's progress and metric samples, sent to the parent at most every REPORT_EVERY_S."""

    def __init__(self, index: int, events, metrics: IngestMetrics) -> None:
        self.index, self.events, self.metrics = index, events, metrics
        self._last = 0.0
        self.latest: dict = {"records": 0, "bytes": 0, "lag": {}, "metrics": []}

    def update(self, snap: Snapshot) -> None:
        self.latest = {"records": snap.records, "bytes": snap.bytes, "lag": dict(snap.lag), "metrics": []}
        now = time.monotonic()
        if now - self._last >= REPORT_EVERY_S:
            self._last = now
            self.events.put(("progress", self.index, self.body()))

    def body(self) -> dict:
        return {**self.latest, "metrics": _samples(self.metrics)}

    def warn(self, text: str) -> None:
        self.events.put(("warn", self.index, text))


def _samples(metrics: IngestMetrics) -> list[tuple[str, str, str, dict, float]]:
    """The worker's metric samples as plain tuples (name, kind, help, labels, value)."""
    out = []
    for family in metrics.registry.collect():
        if family.name == "kafka_backup_backups":
            continue  # the parent counts the run once, by its own outcome
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            kind = "counter" if family.type == "counter" else "gauge"
            name = s.name.removesuffix("_total") if kind == "counter" else s.name
            out.append((name, kind, family.documentation, dict(s.labels), s.value))
    return out


def _worker(index: int, options: IngestOptions, events) -> None:
    """One worker process: an ordinary ingest; SIGTERM/SIGINT (the parent relaying a stop) end it cleanly."""
    metrics = IngestMetrics()
    reporter = _QueueReporter(index, events, metrics)
    try:
        summary = ingest(options, reporter=reporter, metrics=metrics)
    except KbakError as exc:
        # Its kind (the nearest class of core.errors) travels with it: the kind decides the exit code.
        kind = next(c for c in type(exc).__mro__ if c.__module__ == KbakError.__module__)
        events.put(("failed", index, (str(exc), kind)))
        return
    except BaseException as exc:  # reported, never lost: the parent stops the others
        events.put(("failed", index, (f"{type(exc).__name__}: {exc}", KbakError)))
        return
    events.put(("done", index, {"summary": summary.as_dict(), "progress": reporter.body()}))


def _halt(procs, summaries: dict) -> bool:
    """Ask every worker still running to stop (SIGTERM: each finishes its flush and commits)."""
    for i, p in enumerate(procs):
        if i not in summaries and p.is_alive():
            with contextlib.suppress(Exception):
                p.terminate()
    return True
