"""The verified point: where the last clean ``kbak validate`` left the custody chain, so the next starts there.

Continuous ingest adds a version every few seconds; reading two objects per version (log entry and
manifest) for every ``kbak list`` and ``kbak validate`` grows without bound. After a validation that
found no error over the whole chain, validate writes ``_kbak/verified.json``: the version it reached,
that version's manifest SHA-256, and the state later checks need from everything before (files live
per the manifests, the rare manifest keys chain-wide checks read (erasure's scrubbed files, case states, removed
offsets, kept schemas), ``kbak list``'s runs and coverage). The next
``kbak validate`` (not ``--deep``, ``--full``, ``--repair``, ``--anchor`` or ``--backup-id``, which
check everything) and ``kbak list`` then read only the versions from there on.

Trust: the point is only used if its own digest holds and the manifest it names still hashes to what
it recorded; every manifest after it must chain to that one (``chain-link``), so rewriting anything
before it means rewriting the point too. ``validate --full`` re-checks everything and ``--anchor``
(digests kept outside the lake) catches a consistent rewrite of both.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from pipeline.core.errors import StorageError
from pipeline.core.storage import Lake
from pipeline.custody.chain import VersionRecord, load_chain, log_versions
from pipeline.custody.manifest import canonical_json, manifest_path, sealed_versions, sha256_hex

POINT = "_kbak/verified.json"
FORMAT = "kbak-verified/1"
SPARSE_KEYS = ("files_scrubbed", "case", "case_objects", "removed_offsets", "schemas")


@dataclass
class VerifiedPoint:
    version: int
    manifest_sha256: str
    live: dict[str, list] = field(default_factory=dict)  # path -> [version that added it, manifest entry]
    bodies: list[list] = field(default_factory=list)  # [version, body trimmed to SPARSE_KEYS], where present
    runs: list[dict] = field(default_factory=list)  # kbak list's runs up to ``version``
    coverage_parts: list[dict] = field(default_factory=list)  # per (topic, partition) ranges
    verified_at: str | None = None

    def prefix_records(self) -> list[VersionRecord]:
        """Stand-ins for the manifests before the point that chain-wide checks read (erase, cases, ...)."""
        return [VersionRecord(v, manifest={"body": body}) for v, body in self.bodies]


def load(lake: Lake) -> VerifiedPoint | None:
    """The point, if present, intact and still naming the manifest it recorded; else None."""
    try:
        doc = json.loads(lake.read_bytes(POINT))
    except (FileNotFoundError, OSError, ValueError):
        return None
    digest = doc.pop("sha256", None)
    if doc.pop("format", None) != FORMAT or digest != sha256_hex(canonical_json(doc)):
        return None
    try:
        point = VerifiedPoint(**doc)
        if sha256_hex(lake.read_bytes(manifest_path(point.version))) != point.manifest_sha256:
            return None
    except (FileNotFoundError, OSError, TypeError):
        return None
    return point


def save(lake: Lake, point: VerifiedPoint) -> bool:
    """Write the point; False when the lake is read-only to us (an auditor's credentials): nothing lost."""
    doc = asdict(point)
    data = {"format": FORMAT, **doc, "sha256": sha256_hex(canonical_json(doc))}
    try:
        lake.write_bytes(POINT, canonical_json(data))
    except (OSError, StorageError):  # StorageError: the storage layer's one kind for a refused write
        return False
    return True


def chain_since(lake: Lake, point: VerifiedPoint) -> list[VersionRecord] | None:
    """The records from the point's version to the newest (the point's own first); None if the lake shrank."""
    found = set(log_versions(lake)) | set(sealed_versions(lake))
    newest = max(found, default=-1)
    if newest < point.version:
        return None
    return load_chain(lake, list(range(point.version, newest + 1)))


def sparse_bodies(chain: list[VersionRecord]) -> list[list]:
    """What checks over the whole chain need of each manifest beyond the point's derived state: the
    rare keys (erasure's scrubbed files, case states, removed offsets, kept schemas), with the operation."""
    out = []
    for rec in chain:
        body = rec.body or {}
        kept = {k: body[k] for k in SPARSE_KEYS if body.get(k)}
        if kept:
            out.append([rec.version, {"operation": body.get("operation"), **kept}])
    return out
