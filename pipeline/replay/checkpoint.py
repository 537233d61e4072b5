"""What a replay has delivered, per source partition, and the file that lets a rerun continue from it.

Delivery reports (idempotent producer, ``acks=all``) say exactly which records the target holds.
Per source partition kbak keeps the last offset up to which *everything* produced was delivered,
plus any offsets delivered beyond a failed one (possible when one source partition feeds several
target partitions). A rerun with the same checkpoint skips both, so nothing is produced twice.
The file is rewritten atomically (temp file, fsync, rename; one PUT on S3) as the run goes and when it ends.

Every replay keeps one: ``--checkpoint FILE``, or by default a file in the lake named by a digest of
the lake, the selection, the topic mapping and the target (``Checkpoint.default``), so running the
same replay again resumes it, or says it was already delivered, instead of doubling the target.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.errors import KbakError, StorageError, first_line
from pipeline.core.schema import TP
from pipeline.core.storage import Lake
from pipeline.core.timefmt import now_iso

FORMAT = 1
REPLAY_DIR = "_kbak/replay"  # default checkpoints, in the lake (outside the Delta table)


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


class _Store:
    """Where a checkpoint file lives: a file of a lake (local or S3) or a local file; writes are atomic."""

    def __init__(self, lake: Lake, relative: str, where: str) -> None:
        self.lake, self.relative, self.where = lake, relative, where

    @classmethod
    def file(cls, path: Path) -> _Store:
        return cls(Lake.at(path.parent), path.name, str(path))

    def load(self) -> bytes | None:
        return self.lake.read_bytes(self.relative) if self.lake.exists(self.relative) else None

    def save(self, data: bytes) -> None:
        self.lake.write_bytes(self.relative, data)


def state_dir() -> Path:
    """Where default checkpoints go when the lake is read-only: ``$XDG_STATE_HOME/kbak/replay``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kbak" / "replay"


def default_key(fingerprint: dict, target: str) -> str:
    """The default checkpoint's name: a digest of the lake, the selection, the mapping and the target."""
    servers = ",".join(sorted(s.strip() for s in target.split(",") if s.strip()))
    text = json.dumps({**fingerprint, "target": servers}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class Checkpoint:
    """The checkpoint file's content, and where it is kept."""

    store: _Store
    fingerprint: dict
    table_version: int | None = None
    complete: bool = False
    completed_at: str | None = None
    records: int = 0
    progress: dict[TP, tuple[int | None, list[int]]] = field(default_factory=dict)
    groups: dict = field(default_factory=dict)  # GroupMapper.state()
    # per target partition "topic:p": {"start": its end before the replay first wrote to it,
    # "next": the offset after the last checkpointed record} (see reconcile.py)
    targets: dict[str, dict] = field(default_factory=dict)
    fallback: _Store | None = None  # a default checkpoint's local place, used if the lake refuses writes
    note: str | None = None  # said in the summary (e.g. the lake was read-only)

    @property
    def path(self) -> str:
        return self.store.where

    @classmethod
    def open(cls, path: str | Path, fingerprint: dict, fresh: bool = False) -> Checkpoint:
        """``--checkpoint FILE``: load it if it exists (refusing one written for a different replay),
        else a fresh one; ``fresh`` (``--again``) starts over whatever the file holds."""
        p = Path(path)
        try:  # as --output: the directory is made now, before anything is produced
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KbakError(f"--checkpoint {p}: cannot create directory {p.parent}: {exc.strerror or exc}") from None
        return cls._load(_Store.file(p), fingerprint, f"--checkpoint {p}", fresh)

    @classmethod
    def default(cls, lake: Lake, fingerprint: dict, target: str, fresh: bool = False) -> Checkpoint:
        """The checkpoint every replay keeps without ``--checkpoint``: ``_kbak/replay/<key>.json`` in
        the lake, or (a lake this user cannot write, e.g. an auditor's read-only one) the same name
        under ``state_dir()``. A rerun of the same replay finds it in either place and resumes."""
        key = default_key(fingerprint, target)
        relative = f"{REPLAY_DIR}/{key}.json"
        in_lake = _Store(lake, relative, lake.path(relative) if lake.is_s3 else str(Path(lake.root) / relative))
        local = _Store.file(state_dir() / f"{key}.json")
        try:
            found = in_lake if fresh or in_lake.lake.exists(relative) else None
        except (OSError, StorageError) as exc:
            raise KbakError(f"cannot read the replay checkpoint {in_lake.where}: {first_line(exc)}") from None
        store = found or (local if local.lake.exists(local.relative) else in_lake)
        ckpt = cls._load(store, fingerprint, f"replay checkpoint {store.where}", fresh)
        ckpt.fallback = local if store is in_lake else None
        return ckpt

    @classmethod
    def _load(cls, store: _Store, fingerprint: dict, name: str, fresh: bool) -> Checkpoint:
        raw = None if fresh else store.load()
        if raw is None:
            return cls(store, fingerprint)
        try:
            data = json.loads(raw)
            if data.get("format") != FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}")
            progress = {
                (e["topic"], int(e["partition"])): (e["last_delivered_offset"], list(e.get("delivered_beyond", [])))
                for e in data["partitions"]
            }
        except (ValueError, KeyError, TypeError) as exc:
            raise KbakError(f"{name} is not a kbak replay checkpoint: {exc}") from None
        saved = data.get("selection", {})
        for key in sorted(set(saved) | set(fingerprint)):
            if saved.get(key) != fingerprint.get(key):
                raise KbakError(
                    f"{name} was written by a different replay ({key}: {saved.get(key)!r} there, "
                    f"{fingerprint.get(key)!r} now); use a new checkpoint file"
                )
        return cls(
            store,
            fingerprint,
            table_version=data.get("table_version"),
            complete=bool(data.get("complete")),
            completed_at=data.get("completed_at"),
            records=int(data.get("records_delivered", 0)),
            progress=progress,
            groups=data.get("groups", {}),
            targets=data.get("targets", {}),
        )

    def save(self) -> None:
        now = now_iso()
        if self.complete and self.completed_at is None:
            self.completed_at = now
        body = {
            "format": FORMAT,
            "updated_at": now,
            "complete": self.complete,
            "completed_at": self.completed_at,
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
        data = json.dumps(body, indent=1).encode()
        try:
            self.store.save(data)
        except (OSError, StorageError) as exc:  # StorageError: the lake refused (e.g. a read-only role)
            if self.fallback is None:
                raise KbakError(f"cannot write the replay checkpoint {self.path}: {first_line(exc)}") from None
            self.note = f"the lake refused the checkpoint ({first_line(exc)}); it is kept at {self.fallback.where}"
            self.store, self.fallback = self.fallback, None
            try:
                self.store.save(data)
            except OSError as again:
                raise KbakError(f"cannot write the replay checkpoint {self.path}: {first_line(again)}") from None
