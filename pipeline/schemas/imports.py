"""``kbak schemas import --from-archive``: keep the schemas an archived ``_schemas`` topic holds.

Ids already kept are left as they are (a kept document is never rewritten). The newly kept ones are
listed, with their SHA-256, in the manifest of a record-only Delta commit (``schemas-import``), so
they enter the custody chain like the ones ingest keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.core.storage import Lake
from pipeline.core.table import open_table
from pipeline.schemas.archive import DEFAULT_TOPIC, scan_archive
from pipeline.schemas.store import SchemaStore


@dataclass
class ImportSummary:
    lake: str
    topic: str
    registrations: int
    kept: list[int] = field(default_factory=list)
    already_kept: list[int] = field(default_factory=list)
    invalid: list[dict] = field(default_factory=list)
    skipped: int = 0
    version: int | None = None  # the custody commit listing the kept schemas

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def import_from_archive(lake: Lake, topic: str = DEFAULT_TOPIC) -> ImportSummary:
    from pipeline.custody.kept_schemas import listed_ids
    from pipeline.custody.operation import commit_operation

    scan = scan_archive(lake, topic)
    store = SchemaStore(lake)
    summary = ImportSummary(lake.uri, topic, len(scan.registrations), invalid=scan.invalid, skipped=scan.skipped)
    entries = []
    listed = listed_ids(lake)
    for schema in scan.schemas():
        if store.has(schema.id):
            summary.already_kept.append(schema.id)
            if schema.id not in listed:  # kept by a run that stopped before its commit: list it now
                entries.append(store.put(store.get(schema.id)))
            continue
        entries.append(store.put(schema))
        summary.kept.append(schema.id)
    if entries:
        body = {"source_topic": topic, "schemas": entries}
        summary.version = commit_operation(lake, open_table(lake), "schemas-import", body)
    return summary
