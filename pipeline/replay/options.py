"""What a replay is asked to do, and the parsing of the flags that say it (keys, offsets, maps; times: core.timefmt).

Every parser raises a one-line KbakError naming the flag, so bad input fails before anything runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.core.errors import KbakError
from pipeline.core.parsing import parse_key, parse_time
from pipeline.core.storage import Lake
from pipeline.core.timefmt import iso_ms
from pipeline.schemas.registry import RegistryOptions

__all__ = ["OffsetRange", "ReplayOptions", "parse_key", "parse_offsets", "parse_rate", "parse_time", "parse_topic_map"]

REPARTITION_MODES = ("murmur2", "round-robin")


@dataclass(frozen=True)
class OffsetRange:
    """``--offsets P:START-END``: source offsets START..END (inclusive) of partition P; END may be open."""

    partition: int
    start: int
    end: int | None


@dataclass
class ReplayOptions:
    """Everything ``replay()`` needs; the CLI and notebooks build one of these."""

    lake: Lake
    bootstrap_servers: str | None = None  # may be omitted for a dry run
    topics: list[str] = field(default_factory=list)  # empty: every archived topic
    partitions: list[int] = field(default_factory=list)
    from_ms: int | None = None  # record timestamp, inclusive
    to_ms: int | None = None  # record timestamp, inclusive
    key: bytes | None = None
    where: str | None = None
    offsets: list[OffsetRange] = field(default_factory=list)
    as_of: int | str | None = None
    topic_map: dict[str, str] = field(default_factory=dict)
    repartition: str | None = None  # None (keep partitions), "murmur2" or "round-robin"
    create_topics: bool = False
    offset_headers: bool = False
    checkpoint: str | None = None  # None: the default checkpoint (checkpoint.Checkpoint.default)
    again: bool = False  # deliver the selection again even if this replay already delivered it
    dry_run: bool = False
    rate_records: float | None = None  # records/s
    rate_bytes: float | None = None  # bytes/s (key + value)
    restore_groups: list[str] = field(default_factory=list)
    backup_id: str | None = None  # which group snapshot to restore from (default: the latest)
    max_records: int | None = None  # stop (cleanly, resumable) after this many records
    kafka_settings: dict[str, str] = field(default_factory=dict)
    connect_timeout_s: float = 10.0  # how long the target may take to answer before the run is refused
    delivery_timeout_s: float = 30.0  # how long a record may wait for the target's ack (a dead target fails then)
    batch_rows: int = 10_000  # rows per Arrow batch handed to the producer loop (bounds its Python lists)
    chunk_rows: int = 100_000  # rows of a topic sorted at a time (bounds the sort's memory)
    schema_registry_target: RegistryOptions | None = None  # rewrite schema ids to this registry's (schema_ids.py)

    def validate(self) -> None:
        if self.from_ms is not None and self.to_ms is not None and self.to_ms < self.from_ms:
            raise KbakError(
                f"the window ends before it starts: --to {iso_ms(self.to_ms)} is before --from {iso_ms(self.from_ms)}"
            )
        if self.repartition is not None and self.repartition not in REPARTITION_MODES:
            raise KbakError(f"--repartition must be one of {', '.join(REPARTITION_MODES)}, not {self.repartition!r}")
        if not self.dry_run and not self.bootstrap_servers:
            raise KbakError("--bootstrap-servers (the target cluster) is required unless --dry-run")
        if self.restore_groups and self.dry_run:
            raise KbakError("--restore-groups commits offsets on the target and cannot be combined with --dry-run")
        for name, rate in (("--rate-limit", self.rate_records), ("--rate-limit-bytes", self.rate_bytes)):
            if rate is not None and rate <= 0:
                raise KbakError(f"{name} must be positive, not {rate:g}")
        if self.chunk_rows < 1 or self.batch_rows < 1:
            raise KbakError("chunk_rows and batch_rows must be at least 1")
        if self.connect_timeout_s <= 0:
            raise KbakError(f"--connect-timeout must be positive, not {self.connect_timeout_s:g}")
        if self.delivery_timeout_s <= 0:
            raise KbakError(f"--delivery-timeout must be positive, not {self.delivery_timeout_s:g}")
        if self.max_records is not None and self.max_records < 1:
            raise KbakError(f"--max-records must be at least 1, not {self.max_records}")
        if self.where is not None and not self.where.strip():
            raise KbakError("--where is empty")

    def target_topic(self, source_topic: str) -> str:
        return self.topic_map.get(source_topic, source_topic)


_OFFSETS = re.compile(r"^(\d+):(\d+)-(\d*)$")


def parse_offsets(specs: list[str]) -> list[OffsetRange]:
    out = []
    for spec in specs:
        m = _OFFSETS.match(spec.strip())
        if not m:
            raise KbakError(f"--offsets {spec!r} must be PARTITION:START-END (END may be left out)")
        start, end = int(m.group(2)), int(m.group(3)) if m.group(3) else None
        if end is not None and end < start:
            raise KbakError(f"--offsets {spec!r} ends before it starts")
        out.append(OffsetRange(int(m.group(1)), start, end))
    return out


def parse_topic_map(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        src, sep, dst = pair.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise KbakError(f"--topic-map {pair!r} must be SOURCE=TARGET")
        out[src.strip()] = dst.strip()
    return out


def parse_rate(text: str | float | None, flag: str) -> float | None:
    """A positive rate, optionally with a decimal size suffix (``5MB`` = 5,000,000) for byte rates."""
    if text is None or text == "":
        return None
    if isinstance(text, int | float):
        return float(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmg]?)b?(/s)?\s*", str(text).lower())
    if not m:
        raise KbakError(f"{flag} {text!r} is not a rate (e.g. 500, 2k, 5MB)")
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]
