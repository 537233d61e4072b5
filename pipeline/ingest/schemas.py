"""Keeping schemas at ingest (``kbak ingest --schema-registry URL``).

For every schema id framed in an archived record's key or value, the schema (and its references)
is fetched once and written to the lake before the flush holding the record is committed; the
flush's custody manifest lists each newly kept document with its SHA-256, so a schema is in the
chain of custody no later than the first record that needs it.

Policy (documented in docs/schemas.md):
- the registry says it has no such id: the records are archived as they are and counted per id
  (summary ``schemas.unknown``); ``kbak query undecodable`` lists them later.
- the registry cannot answer (down, 5xx, refused credentials): the ingest fails with a one-line
  error before committing the records, so nothing is archived without its schema; a rerun
  continues where the archive ends. ``--schema-registry-optional`` instead archives such records
  and counts them (``schemas.unkept``), retrying the id at the next flush.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from pipeline.core.errors import KbakError
from pipeline.core.storage import Lake
from pipeline.schemas.registry import RegistryOptions, RegistryReader, RegistryUnavailable, UnknownSchema
from pipeline.schemas.store import SchemaStore
from pipeline.schemas.wire import schema_id_counts

log = logging.getLogger("kbak.ingest.schemas")

PAYLOAD_COLUMNS = ("key", "value")


@dataclass
class SchemaStats:
    kept: list[int] = field(default_factory=list)  # ids this run wrote to the lake
    unknown: Counter = field(default_factory=Counter)  # id -> records: the registry has no such id
    unkept: Counter = field(default_factory=Counter)  # id -> records: registry unavailable (optional mode)

    def as_dict(self) -> dict:
        return {
            "kept": sorted(self.kept),
            "unknown": {str(k): v for k, v in sorted(self.unknown.items())},
            "unkept": {str(k): v for k, v in sorted(self.unkept.items())},
        }


class SchemaKeeper:
    """Sees each consumed batch before it is buffered; hands each flush the schemas it must list."""

    def __init__(self, lake: Lake, options: RegistryOptions, optional: bool = False) -> None:
        self.store = SchemaStore(lake)
        self.reader = RegistryReader(options)
        self.optional = optional
        self.stats = SchemaStats()
        self._unknown_ids: set[int] = set()
        self._pending: list[dict] = []
        self._listed: set[int] | None = None  # kept ids some manifest lists (read when first needed)

    def observe(self, table: pa.Table) -> None:
        """Keep the schema of every id in ``table`` not kept yet; raises KbakError if the registry is down."""
        counts: Counter = Counter()
        for name in PAYLOAD_COLUMNS:
            counts.update(schema_id_counts(table.column(name)))
        for sid, records in sorted(counts.items()):
            if self.store.has(sid):
                self._list_if_unlisted(sid)
                continue
            if sid in self._unknown_ids:
                self.stats.unknown[sid] += records
                continue
            try:
                fetched = self.reader.fetch(sid, known=self.store.ids())
            except UnknownSchema as exc:
                log.warning("%s; its records are archived undecodable", exc)
                self._unknown_ids.add(sid)
                self.stats.unknown[sid] += records
                continue
            except RegistryUnavailable as exc:
                if not self.optional:
                    raise KbakError(f"{exc}; nothing was archived past the last commit (rerun to continue)") from None
                log.warning("%s; archiving its records without the schema", exc)
                self.stats.unkept[sid] += records
                continue
            for schema in fetched:
                self._pending.append(self.store.put(schema))
                self.stats.kept.append(schema.id)
                if self._listed is not None:
                    self._listed.add(schema.id)

    def _list_if_unlisted(self, sid: int) -> None:
        """A document kept by a run that stopped before its commit gets listed by this run's commit."""
        if self._listed is None:
            from pipeline.custody.kept_schemas import listed_ids

            self._listed = listed_ids(self.store.lake)
        if sid not in self._listed:
            self._listed.add(sid)
            self._pending.append(self.store.put(self.store.get(sid)))

    def take_pending(self) -> list[dict]:
        """Manifest entries of the schemas kept since the last flush (for that flush's commit)."""
        out, self._pending = self._pending, []
        return out

    def requeue(self, entries: list[dict]) -> None:
        """A flush committed nothing: its schemas go into the next flush's manifest instead."""
        self._pending = entries + self._pending

    def close(self) -> None:
        self.reader.close()
