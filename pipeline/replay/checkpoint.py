"""What a replay has delivered, per source partition, and the file that lets a rerun continue from it.

Delivery reports (idempotent producer, ``acks=all``) say exactly which records the target holds.
Per source partition kbak keeps the last offset up to which *everything* produced was delivered,
plus any offsets delivered beyond a failed one (possible when one source partition feeds several
target partitions). A rerun with the same ``--checkpoint`` skips both, so nothing is produced twice.
The file is rewritten atomically (temp file, fsync, rename) as the run goes and when it ends.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.errors import KbakError
from pipeline.core.timefmt import now_iso

FORMAT = 1
TP = tuple[str, int]


class Progress:
    """Delivered source offsets per source partition: a contiguous watermark plus stragglers."""

    def __init__(self, resume: dict[TP, tuple[int | None, list[int]]] | None = None) -> None:
        self.last: dict[TP, int | None] = {tp: last for tp, (last, _extra) in (resume or {}).items()}
        self.beyond: dict[TP, set[int]] = {tp: set(extra) for tp, (_last, extra) in (resume or {}).items() if extra}
        self.pending: dict[TP, list[int]] = {}  # produced, not yet known delivered, in produce order
        self.head: dict[TP, int] = {}  # pending[tp][:head[tp]] is settled

    def produced(self, tp: TP, offsets: list[int]) -> None:
        q = self.pending.get(tp)
        if q is None:
            self.pending[tp], self.head[tp] = list(offsets), 0
        else:
            q.extend(offsets)

    def delivered_many(self, tp: TP, offsets: list[int]) -> None:
        """Record deliveries (in the order the reports came); the common case is one slice compare."""
        q, h = self.pending[tp], self.head[tp]
        if q[h : h + len(offsets)] == offsets:
            self._advance(tp, h + len(offsets))
        else:
            for o in offsets:
                self.delivered(tp, o)

    def delivered(self, tp: TP, offset: int) -> None:
        q, h = self.pending[tp], self.head[tp]
        if h < len(q) and q[h] == offset:
            self._advance(tp, h + 1)
        else:  # an older record of this partition is still in flight, or failed
            self.beyond.setdefault(tp, set()).add(offset)

    def _advance(self, tp: TP, h: int) -> None:
        q = self.pending[tp]
        extra = self.beyond.get(tp)
        while extra and h < len(q) and q[h] in extra:
            extra.discard(q[h])
            h += 1
        self.last[tp] = q[h - 1]
        if h > 65_536 and h * 2 > len(q):  # drop the settled prefix now and then
            del q[:h]
            h = 0
        self.head[tp] = h

    def state(self) -> dict[TP, tuple[int | None, list[int]]]:
        out = {}
        for tp in set(self.last) | set(self.beyond):
            last = self.last.get(tp)
            extra = self.beyond.get(tp, set())
            out[tp] = (last, sorted(o for o in extra if last is None or o > last))
        return out

    @property
    def in_flight(self) -> int:
        return sum(len(q) - self.head[tp] for tp, q in self.pending.items())


@dataclass
class Checkpoint:
    """The checkpoint file's content."""

    path: Path
    fingerprint: dict
    table_version: int | None = None
    complete: bool = False
    records: int = 0
    progress: dict[TP, tuple[int | None, list[int]]] = field(default_factory=dict)
    groups: dict = field(default_factory=dict)  # GroupMapper.state()
    # per target partition "topic:p": {"start": its end before the replay first wrote to it,
    # "next": the offset after the last checkpointed record} (see reconcile.py)
    targets: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | Path, fingerprint: dict) -> Checkpoint:
        """Load ``path`` if it exists (refusing one written for a different replay), else a fresh one."""
        p = Path(path)
        if not p.exists():
            if not p.parent.exists():
                raise KbakError(f"--checkpoint {p}: directory {p.parent} does not exist")
            return cls(p, fingerprint)
        try:
            data = json.loads(p.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}")
            progress = {
                (e["topic"], int(e["partition"])): (e["last_delivered_offset"], list(e.get("delivered_beyond", [])))
                for e in data["partitions"]
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KbakError(f"--checkpoint {p} is not a kbak replay checkpoint: {exc}") from None
        saved = data.get("selection", {})
        for key in sorted(set(saved) | set(fingerprint)):
            if saved.get(key) != fingerprint.get(key):
                raise KbakError(
                    f"--checkpoint {p} was written by a different replay ({key}: {saved.get(key)!r} there, "
                    f"{fingerprint.get(key)!r} now); use a new checkpoint file"
                )
        return cls(
            p,
            fingerprint,
            table_version=data.get("table_version"),
            complete=bool(data.get("complete")),
            records=int(data.get("records_delivered", 0)),
            progress=progress,
            groups=data.get("groups", {}),
            targets=data.get("targets", {}),
        )

    def save(self) -> None:
        body = {
            "format": FORMAT,
            "updated_at": now_iso(),
            "complete": self.complete,
            "table_version": self.table_version,
            "records_delivered": self.records,
            "selection": self.fingerprint,
            "partitions": [
                {"topic": t, "partition": p, "last_delivered_offset": last, "delivered_beyond": extra}
                for (t, p), (last, extra) in sorted(self.progress.items())
            ],
            "groups": self.groups,
            "targets": self.targets,
        }
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with open(tmp, "w") as fh:
            json.dump(body, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
