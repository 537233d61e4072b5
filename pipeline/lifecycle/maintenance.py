"""Lifecycle work a continuous ingest does on the side: retention once a day, compaction of closed days.

``kbak ingest --retention-apply --compact`` runs this in a thread next to the ingest loop
(``start_for_ingest``; the ingest loop itself knows nothing of it). Both are ordinary kbak commits,
safe next to ingest's own: they carry no application transactions and delta-rs rebases them around
ingest commits.

- Retention: ``retention.apply`` at the first check of each UTC day (policies from the lake, where the
  ingest YAML's ``retention:`` section was written at start).
- Compaction: every closed UTC day (before today, after a grace period past midnight for records still
  in flight) that still has small files: the previous day once it closes, and any older day late
  records or downtime left fragmented. Days already compacted are left alone (nothing to pack).

A failure is reported on the reporter's warning line and retried at the next check; it never stops
the ingest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from pipeline.core import defaults
from pipeline.core.storage import Lake
from pipeline.lifecycle.policies import Policy, load_policies, set_policy

log = logging.getLogger("kbak.lifecycle")

GRACE = timedelta(minutes=10)


def sync_policies(lake: Lake, rules: list[dict]) -> list[dict]:
    """Write the ingest config's ``retention:`` rules to the lake (only those that differ); returns the changes."""
    have = {p.topics: p for p in load_policies(lake)}
    changes = []
    for rule in rules:
        topics, days, reason = rule["topics"], int(rule["days"]), rule.get("reason")
        current: Policy | None = have.get(topics)
        if current is None or current.days != days or (reason and current.reason != reason):
            changes.append(set_policy(lake, topics, days, reason or "kbak ingest config"))
    return changes


class Maintenance(threading.Thread):
    """Checks every ``interval`` seconds until ``stop`` is set; ``tick`` does one check (tests call it)."""

    def __init__(
        self,
        lake: Lake,
        stop: threading.Event,
        *,
        compact: bool,
        retention_apply: bool,
        topics: str | None = None,
        target_file_size: int = defaults.TARGET_FILE_SIZE,
        interval: float = 300.0,
        warn: Callable[[str], None] = log.warning,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(name="kbak-lifecycle", daemon=True)
        self.lake, self.stop = lake, stop
        self.compact, self.retention_apply, self.topics = compact, retention_apply, topics
        self.target_file_size, self.interval, self.warn, self.clock = target_file_size, interval, warn, clock
        self.retention_day: date | None = None
        self.results: list[dict] = []

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.tick()

    def tick(self) -> None:
        now = self.clock()
        if self.retention_apply and self.retention_day != now.date():
            self._do("retention", self._retention, now)
        if self.compact:
            self._do("compaction", self._compact, now)

    def _retention(self, now: datetime) -> None:
        from pipeline.lifecycle.retention import apply

        out = apply(self.lake, now=now)
        self.retention_day = now.date()
        if out.get("version") is not None:
            self.results.append({"operation": "retention", **out})

    def _compact(self, now: datetime) -> None:
        from pipeline.lifecycle.compact import compact

        last_closed = (now - GRACE).date() - timedelta(days=1)
        out = compact(self.lake, topics=self.topics, to_date=last_closed.isoformat(),
                      target_file_size=self.target_file_size)  # fmt: skip
        if out["groups"]:
            self.results.append({"operation": "compact", **out})

    def _do(self, what: str, fn: Callable[[datetime], None], now: datetime) -> None:
        try:
            fn(now)
        except Exception as exc:  # reported, retried at the next check; the ingest goes on
            self.warn(f"{what} failed (retried at the next check): {' '.join(str(exc).split())[:300]}")


def start_for_ingest(
    opts,
    stop: threading.Event,
    rules: list[dict],
    compact: bool,
    retention_apply: bool,
    interval: float,
    warn: Callable[[str], None] = log.warning,
) -> Maintenance | None:
    """Before an ingest (``opts``: its IngestOptions): write its config's retention rules, then start the checker.

    Kafka is asked first (TLS, SASL, reachability, within ``connect_timeout_s``), so a run that cannot
    read its source fails before anything is written to the lake, as ingest itself does.
    """
    if not (rules or compact or retention_apply):
        return None
    from pipeline.core.kafka import client_config, cluster_metadata
    from pipeline.ingest.commit import ensure_table

    cluster_metadata(client_config(opts.bootstrap_servers, opts.kafka_settings), timeout=opts.connect_timeout_s)
    if rules:
        ensure_table(opts.lake)
        sync_policies(opts.lake, rules)
    if not (compact or retention_apply):
        return None
    topics = "|".join(f"(?:{t})" for t in opts.topics)
    worker = Maintenance(opts.lake, stop, compact=compact, retention_apply=retention_apply, topics=topics,
                         target_file_size=opts.target_file_size, interval=interval, warn=warn)  # fmt: skip
    worker.start()
    return worker
