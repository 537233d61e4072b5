"""``kbak replay --schema-registry-target URL``: restore wire-format records into another environment.

Before the first record is produced, every kept schema (``_kbak/schemas``) is registered in the
target registry under its kept subject, references first (each reference pointed at the subject
and version the target gave it), and the target's id for each kept id is noted. Then each replayed
key and value in the wire format has its 4-byte schema id replaced by the target's id; every byte
after the id is produced exactly as archived. Records whose id has no kept schema are produced
unchanged and counted (``schema_ids.unmapped``). Without the flag, replay never touches the bytes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from pipeline.core.errors import KbakError
from pipeline.core.storage import Lake
from pipeline.schemas.registry import RegistryOptions, RegistryUnavailable, client
from pipeline.schemas.store import KeptSchema, SchemaStore
from pipeline.schemas.wire import schema_id, with_schema_id


@dataclass
class IdRewriter:
    """Maps kept schema ids to the target registry's ids and rewrites batches with the map."""

    mapping: dict[int, int]
    rewritten: int = 0
    unmapped: Counter = field(default_factory=Counter)

    @classmethod
    def register(cls, lake: Lake, target: RegistryOptions) -> IdRewriter:
        """Register every kept schema in ``target``; a registry that refuses is a KbakError, before producing."""
        kept = SchemaStore(lake).load_all()
        if not kept:
            raise KbakError(
                f"--schema-registry-target: the lake {lake.uri} keeps no schemas "
                "(ingest with --schema-registry, or kbak schemas import --from-archive)"
            )
        registrar = _Registrar(kept, target)
        try:
            for sid in sorted(kept):
                registrar.register(sid)
        finally:
            registrar.close()
        return cls({sid: reg[0] for sid, reg in registrar.done.items()})

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with the schema ids of its framed keys and values replaced."""
        columns = {name: batch.column(name) for name in batch.schema.names}
        for name in ("key", "value"):
            columns[name] = pa.array([self._rewrite(v) for v in columns[name].to_pylist()], columns[name].type)
        return pa.RecordBatch.from_arrays(list(columns.values()), schema=batch.schema)

    def _rewrite(self, data: bytes | None) -> bytes | None:
        sid = schema_id(data)
        if sid is None:
            return data
        new = self.mapping.get(sid)
        if new is None:
            self.unmapped[sid] += 1
            return data
        self.rewritten += 1
        return data if new == sid else with_schema_id(data, new)

    def as_dict(self) -> dict:
        return {
            "mapping": {str(k): v for k, v in sorted(self.mapping.items())},
            "rewritten": self.rewritten,
            "unmapped": {str(k): v for k, v in sorted(self.unmapped.items())},
        }


class _Registrar:
    def __init__(self, kept: dict[int, KeptSchema], target: RegistryOptions) -> None:
        self.kept, self.target = kept, target
        self.client = client(target)
        self.done: dict[int, tuple[int, str, int]] = {}  # kept id -> (target id, subject, version)

    def register(self, sid: int) -> tuple[int, str, int]:
        if sid in self.done:
            return self.done[sid]
        from confluent_kafka.schema_registry import Schema, SchemaReference

        s = self.kept[sid]
        refs = []
        for ref in s.references:
            if ref.id is None or ref.id not in self.kept:
                raise KbakError(f"kept schema {sid} references {ref.name} ({ref.subject} v{ref.version}), not kept")
            _tid, subject, version = self.register(ref.id)
            refs.append(SchemaReference(ref.name, subject, version))
        subject = s.subject or f"kbak-schema-{sid}"
        schema = Schema(s.schema, s.schema_type, refs)
        try:
            self.client.register_schema(subject, schema)
            registered = self.client.lookup_schema(subject, schema)
        except Exception as exc:
            raise RegistryUnavailable(
                f"target schema registry {self.target.display} refused kept schema {sid} (subject {subject}): "
                + " ".join(str(exc).split())[:300]
            ) from None
        self.done[sid] = (registered.schema_id, subject, registered.version)
        return self.done[sid]

    def close(self) -> None:
        import contextlib

        with contextlib.suppress(Exception):
            self.client.close()
