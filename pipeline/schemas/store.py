"""The kept schemas: one JSON document per schema id at ``_kbak/schemas/<id>.json`` in the lake.

A document holds what a reader needs to decode the id's payloads without the registry that issued
it: the schema text, its type, its references (each resolved to the kept id it points at), and
where it came from (subject, version, registry or archived topic). Documents are written once and
never changed; their SHA-256 goes into the custody manifest of the commit that first needs them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from pipeline.core.errors import KbakError, first_line
from pipeline.core.storage import Lake
from pipeline.custody.kept_schemas import SCHEMAS_DIR

TYPES = ("AVRO", "PROTOBUF", "JSON")


@dataclass(frozen=True)
class Reference:
    """A named import of another schema: Avro named type, ``.proto`` import or JSON ``$ref``."""

    name: str
    subject: str
    version: int
    id: int | None = None  # the kept schema it resolves to


@dataclass(frozen=True)
class KeptSchema:
    id: int
    schema_type: str  # AVRO, PROTOBUF or JSON (the registry's names)
    schema: str
    references: tuple[Reference, ...] = ()
    subject: str | None = None
    version: int | None = None
    source: str = ""  # e.g. "registry http://sr:8081" or "archive topic _schemas offset 12"
    kept_at: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> bytes:
        body = asdict(self)
        body["references"] = [asdict(r) for r in self.references]
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> KeptSchema:
        body = json.loads(data)
        refs = tuple(Reference(**r) for r in body.pop("references", []))
        return cls(references=refs, **body)


def path_of(schema_id: int) -> str:
    return f"{SCHEMAS_DIR}/{int(schema_id)}.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SchemaStore:
    """Read and add kept schemas of one lake; ids already kept are never rewritten."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._ids: set[int] | None = None

    def ids(self) -> set[int]:
        if self._ids is None:
            self._ids = {int(p.rsplit("/", 1)[-1][:-5]) for p in self.lake.list_files(SCHEMAS_DIR) if _is_doc(p)}
        return self._ids

    def has(self, schema_id: int) -> bool:
        return schema_id in self.ids()

    def put(self, schema: KeptSchema) -> dict:
        """Write a schema document (once); returns its manifest entry (id, path, sha256, size)."""
        data = schema.to_json()
        path = path_of(schema.id)
        if not self.has(schema.id):
            try:
                self.lake.write_bytes(path, data)
            except OSError as exc:
                raise KbakError(f"cannot keep schema {schema.id} in {self.lake.uri}: {first_line(exc)}") from None
            self.ids().add(schema.id)
        else:
            data = self.lake.read_bytes(path)
        return {"id": schema.id, "path": path, "sha256": sha256(data), "size": len(data)}

    def get(self, schema_id: int) -> KeptSchema:
        return KeptSchema.from_json(self.lake.read_bytes(path_of(schema_id)))

    def load_all(self) -> dict[int, KeptSchema]:
        """Every kept schema; a document that does not parse is skipped (reported by ``kbak schemas``)."""
        out: dict[int, KeptSchema] = {}
        for schema_id in sorted(self.ids()):
            try:
                out[schema_id] = self.get(schema_id)
            except (ValueError, TypeError, OSError):
                continue
        return out


def _is_doc(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.endswith(".json") and name[:-5].isdigit()
