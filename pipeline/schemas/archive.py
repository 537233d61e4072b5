"""Schemas taken from an archived ``_schemas`` topic (``kbak schemas import --from-archive``).

Confluent Schema Registry, and registries compatible with it, keep every registration as a record
of their ``_schemas`` topic: key ``{"keytype": "SCHEMA", "subject", "version", "magic"}``, value
``{"subject", "version", "id", "schema", "schemaType", "references", "deleted"}``. An archive made
without ``--schema-registry`` that also archived that topic can therefore still be decoded: the
registrations are read back from the lake, each id's first registration is kept.

Records of other key types (CONFIG, MODE, NOOP, DELETE_SUBJECT, ...) and tombstones are skipped;
a SCHEMA record that does not parse or lacks id/schema is counted as invalid and reported with its
offset, never fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow.compute as pc

from pipeline.core.errors import KbakError
from pipeline.core.storage import Lake
from pipeline.core.table import open_table
from pipeline.core.timefmt import now_iso
from pipeline.schemas.store import TYPES, KeptSchema, Reference

DEFAULT_TOPIC = "_schemas"


@dataclass
class Registration:
    id: int
    subject: str
    version: int
    schema_type: str
    schema: str
    references: list[dict]
    offset: str  # "partition/offset" in the archived topic


@dataclass
class ArchiveScan:
    topic: str
    registrations: list[Registration] = field(default_factory=list)
    invalid: list[dict] = field(default_factory=list)  # {"partition", "offset", "reason"}
    skipped: int = 0  # other key types and tombstones

    def schemas(self) -> list[KeptSchema]:
        """One KeptSchema per id (its first registration), references resolved to ids."""
        by_version = {(r.subject, r.version): r.id for r in self.registrations}
        first: dict[int, Registration] = {}
        for r in self.registrations:
            first.setdefault(r.id, r)
        now = now_iso()
        out = []
        for r in first.values():
            refs = tuple(
                Reference(
                    ref["name"],
                    ref["subject"],
                    int(ref["version"]),
                    by_version.get((ref["subject"], int(ref["version"]))),
                )
                for ref in r.references
            )
            out.append(
                KeptSchema(
                    id=r.id,
                    schema_type=r.schema_type,
                    schema=r.schema,
                    references=refs,
                    subject=r.subject,
                    version=r.version,
                    source=f"archive topic {self.topic} {r.offset}",
                    kept_at=now,
                )
            )
        return sorted(out, key=lambda s: s.id)


def scan_archive(lake: Lake, topic: str = DEFAULT_TOPIC) -> ArchiveScan:
    """Read the registrations archived from the registry's topic, in (partition, offset) order."""
    dt = open_table(lake)
    table = dt.to_pyarrow_dataset().to_table(
        columns=["partition", "offset", "key", "value"], filter=pc.field("topic") == topic
    )
    if table.num_rows == 0:
        raise KbakError(f"the lake {lake.uri} has no records of topic {topic!r} (archive the registry's topic first)")
    table = table.sort_by([("partition", "ascending"), ("offset", "ascending")])
    scan = ArchiveScan(topic)
    for row in table.to_pylist():
        where = {"partition": row["partition"], "offset": row["offset"]}
        try:
            key = json.loads(row["key"]) if row["key"] is not None else None
        except ValueError:
            scan.invalid.append({**where, "reason": "key is not JSON"})
            continue
        if not isinstance(key, dict) or key.get("keytype") != "SCHEMA" or row["value"] is None:
            scan.skipped += 1
            continue
        reg = _registration(row["value"], f"{row['partition']}/{row['offset']}")
        if isinstance(reg, str):
            scan.invalid.append({**where, "reason": reg})
        else:
            scan.registrations.append(reg)
    return scan


def _registration(value: bytes, where: str) -> Registration | str:
    """A registration from a SCHEMA record's value, or why it is not one."""
    try:
        body = json.loads(value)
    except ValueError:
        return "value is not JSON"
    if not isinstance(body, dict):
        return "value is not a JSON object"
    try:
        schema_id, subject, version = int(body["id"]), str(body["subject"]), int(body["version"])
        schema = body["schema"]
    except (KeyError, TypeError, ValueError):
        return "value lacks id, subject, version or schema"
    if not isinstance(schema, str):
        return "schema is not a string"
    schema_type = str(body.get("schemaType") or "AVRO").upper()
    if schema_type not in TYPES:
        return f"unknown schemaType {schema_type!r}"
    refs = body.get("references") or []
    if not isinstance(refs, list) or not all(
        isinstance(r, dict) and {"name", "subject", "version"} <= r.keys() for r in refs
    ):
        return "references are malformed"
    return Registration(schema_id, subject, version, schema_type, schema, refs, where)
