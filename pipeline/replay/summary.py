"""What a replay did (or, for a dry run, would do): the numbers the CLI prints and ``--json`` returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pipeline.core.timefmt import iso_ms


def with_iso_times(fields: dict) -> dict:
    """A dataclass's fields for output: ``*_timestamp_ms`` become ISO-8601 ``*_timestamp``, in place."""
    out = {}
    for k, v in fields.items():
        if k.endswith("_timestamp_ms"):
            out[k.removesuffix("_ms")] = iso_ms(v)
        else:
            out[k] = v
    return out


@dataclass
class PartitionStats:
    """Delivered records on one target partition."""

    records: int = 0
    bytes: int = 0
    first_offset: int | None = None
    last_offset: int | None = None
    first_timestamp_ms: int | None = None
    last_timestamp_ms: int | None = None

    def add_many(self, records: int, size: int, first_ts_ms: int, last_ts_ms: int) -> None:
        """Count delivered records (target offsets are set from the delivery reports separately)."""
        self.records += records
        self.bytes += size
        if self.first_timestamp_ms is None or first_ts_ms < self.first_timestamp_ms:
            self.first_timestamp_ms = first_ts_ms
        if self.last_timestamp_ms is None or last_ts_ms > self.last_timestamp_ms:
            self.last_timestamp_ms = last_ts_ms

    def as_dict(self) -> dict:
        return with_iso_times(asdict(self))


@dataclass
class ReplaySummary:
    lake: str
    table_version: int
    target: str | None
    dry_run: bool = False
    records: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    status: str = "complete"  # complete | stopped (--max-records) | interrupted | failed
    error: str | None = None
    checkpoint: str | None = None
    checkpoint_note: str | None = None  # e.g. the lake was read-only, so the checkpoint is kept locally
    already_delivered_at: str | None = None  # a rerun of a completed replay: when it completed
    skipped_by_checkpoint: int = 0  # records a previous run already delivered (from the checkpoint)
    reconciled: int = 0  # of those, found on the target past the checkpoint (a killed run's last records)
    targets: dict[tuple[str, int], PartitionStats] = field(default_factory=dict)
    plan: list[dict] = field(default_factory=list)  # dry run: per source partition
    delivered: dict[tuple[str, int], tuple[int | None, list[int]]] = field(default_factory=dict)
    groups: dict[str, dict] = field(default_factory=dict)
    created_topics: list[str] = field(default_factory=list)
    schema_ids: dict | None = None  # --schema-registry-target: kept id -> target id, records rewritten

    def time_range(self) -> tuple[int | None, int | None]:
        firsts = [s.first_timestamp_ms for s in self.targets.values() if s.first_timestamp_ms is not None]
        lasts = [s.last_timestamp_ms for s in self.targets.values() if s.last_timestamp_ms is not None]
        return (min(firsts) if firsts else None, max(lasts) if lasts else None)

    def as_dict(self) -> dict:
        first, last = self.time_range()
        topics: dict[str, dict[str, dict]] = {}
        for (topic, p), stats in sorted(self.targets.items()):
            topics.setdefault(topic, {})[str(p)] = stats.as_dict()
        out = {
            "status": self.status,
            "dry_run": self.dry_run,
            "lake": self.lake,
            "table_version": self.table_version,
            "target": self.target,
            "records": self.records,
            "bytes": self.bytes,
            "first_timestamp": iso_ms(first),
            "last_timestamp": iso_ms(last),
            "duration_s": round(self.duration_s, 3),
            "records_per_s": round(self.records / self.duration_s, 1) if self.duration_s else None,
            "mb_per_s": round(self.bytes / 1e6 / self.duration_s, 3) if self.duration_s else None,
            "topics": topics,
            "delivered": [
                {"topic": t, "partition": p, "last_delivered_offset": last_off, "delivered_beyond": extra}
                for (t, p), (last_off, extra) in sorted(self.delivered.items())
            ],
            "checkpoint": self.checkpoint,
            "checkpoint_note": self.checkpoint_note,
            "already_delivered_at": self.already_delivered_at,
            "skipped_by_checkpoint": self.skipped_by_checkpoint,
            "reconciled": self.reconciled,
            "created_topics": self.created_topics,
            "groups": self.groups,
        }
        if self.schema_ids is not None:
            out["schema_ids"] = self.schema_ids
        if self.dry_run:
            out["plan"] = self.plan
        if self.error:
            out["error"] = self.error
        return out
