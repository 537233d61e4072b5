"""Writing custody manifests, in an order that a crash can never leave unexplained.

Order of writes for every commit kbak makes:

1. the data files are written (their SHA-256 computed from the bytes written);
2. the manifest *body* (operation, files with size/records/SHA-256, offset and time ranges, ...)
   is staged at ``_kbak/custody/staged/<body-sha256>.json``;
3. the Delta commit is made, carrying ``kbak.manifest_body_sha256`` in its commit info;
4. ``seal`` writes ``_kbak/custody/<version>.json``: the body, the version, the SHA-256 of the
   Delta log entry and of the previous manifest, then removes the staged body.

A crash after 2 leaves a staged body no version points at (harmless: ``kbak validate`` lists it as
an orphan and ``kbak validate --repair`` removes orphans older than an hour); a crash after 3
leaves a version whose commit info names a staged body: ``kbak validate`` reports it *unsealed*
(a warning, not a failure: the body is verified against the digest in the commit info) and the
next ``seal`` (every ingest start and end, and ``kbak validate --repair``) turns it into its
manifest. Versions made by other Delta writers get a manifest built from their log entry.

Sealing is deterministic but for a Delta checkpoint that appears meanwhile, so a manifest is never
overwritten: the first one written for a version is the chain's (``Lake.write_new``). The
staged body is removed only after its manifest is written, so a worker that finds the staged body
gone re-checks for the manifest instead of building a different one from the log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from deltalake import DeltaTable

from pipeline.core.storage import Lake
from pipeline.core.timefmt import iso_ms, now_iso

MANIFEST_DIR = "_kbak/custody"
STAGED_DIR = f"{MANIFEST_DIR}/staged"
FORMAT = "kbak-custody/1"


class InfoKey:
    """The keys kbak writes into a Delta commit's commit info (``custom_metadata``)."""

    OPERATION = "kbak.operation"
    BACKUP_ID = "kbak.backup_id"
    SOURCE_CLUSTER = "kbak.source_cluster"
    VERSION = "kbak.version"
    CREATED_BY = "kbak.created_by"
    HOST = "kbak.host"
    RECORDS = "kbak.records"
    PARTITIONS = "kbak.partitions"
    GAPS = "kbak.gaps"
    MANIFEST_BODY_SHA256 = "kbak.manifest_body_sha256"


BODY_DIGEST_KEY = InfoKey.MANIFEST_BODY_SHA256


class Operation(StrEnum):
    """What a commit did (``body.operation`` and the commit info's ``kbak.operation``).

    A new kind of commit (erasure, retention, compaction, ...) is a member here, committed through
    ``custody.operation.commit_operation`` (or, for ingest, a builder like ``ingest_body``).
    """

    CREATE = "create"
    INGEST = "ingest"
    CASE_HOLD = "case-hold"
    CASE_RELEASE = "case-release"
    COMPACT = "compact"
    RETENTION = "retention"
    RETENTION_POLICY = "retention-policy"
    VACUUM = "vacuum"
    ERASE = "erase"
    UPGRADE = "upgrade"


class _FileLike(Protocol):
    path: str
    size: int
    records: int
    sha256: str
    partition_values: dict[str, str]


@dataclass
class FileEntry:
    """One file a commit added or removed, as its manifest records it."""

    path: str
    size: int | None = None
    records: int | None = None
    sha256: str | None = None
    partition_values: dict[str, str] | None = None  # absent in bodies built from a foreign log entry

    @classmethod
    def of(cls, f: _FileLike) -> FileEntry:
        return cls(f.path, f.size, f.records, f.sha256, dict(f.partition_values))

    @classmethod
    def from_dict(cls, d: dict) -> FileEntry:
        d = d if isinstance(d, dict) else {}
        return cls(d.get("path") or "", d.get("size"), d.get("records"), d.get("sha256"), d.get("partition_values"))

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"path": self.path, "size": self.size, "records": self.records, "sha256": self.sha256}
        if self.partition_values is not None:
            out["partition_values"] = self.partition_values
        return out


@dataclass
class ManifestBody:
    """The body of a custody manifest: what one commit did. ``to_dict`` is what gets hashed and stored.

    ``from_dict`` is lenient (a tampered manifest still loads; validate compares digests of the
    stored bytes, never of a re-serialised body); keys it does not know are kept in ``extra`` so
    a body round-trips unchanged.
    """

    operation: str
    backup_id: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    source_cluster: str | None = None
    files_added: list[FileEntry] = field(default_factory=list)
    files_removed: list[FileEntry] = field(default_factory=list)
    partitions: list[dict] = field(default_factory=list)  # per (topic, partition): records, offset/time ranges
    gaps: list[dict] = field(default_factory=list)  # offset ranges ingest found deleted at the source
    sealed_from_log: bool = False  # built from the Delta log entry at sealing (foreign writers, create)
    missing_staged_body: str | None = None  # the digest of a staged body the commit named but that was gone
    extra: dict[str, Any] = field(default_factory=dict)

    _KNOWN = (
        "operation", "backup_id", "created_at", "created_by", "source_cluster", "files_added",
        "files_removed", "partitions", "gaps", "sealed_from_log", "missing_staged_body",
    )  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict | None) -> ManifestBody:
        d = d if isinstance(d, dict) else {}
        return cls(
            operation=d.get("operation") or "",
            backup_id=d.get("backup_id"),
            created_at=d.get("created_at"),
            created_by=d.get("created_by"),
            source_cluster=d.get("source_cluster"),
            files_added=[FileEntry.from_dict(f) for f in _list(d.get("files_added"))],
            files_removed=[FileEntry.from_dict(f) for f in _list(d.get("files_removed"))],
            partitions=[p for p in _list(d.get("partitions")) if isinstance(p, dict)],
            gaps=[g for g in _list(d.get("gaps")) if isinstance(g, dict)],
            sealed_from_log=bool(d.get("sealed_from_log")),
            missing_staged_body=d.get("missing_staged_body"),
            extra={k: v for k, v in d.items() if k not in cls._KNOWN},
        )

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "operation": str(self.operation),
            "backup_id": self.backup_id,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "source_cluster": self.source_cluster,
            "files_added": [f.to_dict() for f in self.files_added],
            "files_removed": [f.to_dict() for f in self.files_removed],
            "partitions": self.partitions,
            "gaps": self.gaps,
        }
        if self.sealed_from_log:
            out["sealed_from_log"] = True
        if self.missing_staged_body:
            out["missing_staged_body"] = self.missing_staged_body
        return {**self.extra, **out}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def ingest_body(
    files: list[_FileLike], ranges: list[dict], gaps: list[dict], source_cluster: str, backup_id: str, created_by: str
) -> ManifestBody:
    """The manifest body of one ingest commit (staged before the commit, sealed after)."""
    return ManifestBody(
        operation=Operation.INGEST,
        backup_id=backup_id,
        created_at=now_iso(),
        created_by=created_by,
        source_cluster=source_cluster,
        files_added=[FileEntry.of(f) for f in files],
        partitions=ranges,
        gaps=gaps,
    )


_SEALED_HEAD: dict[str, tuple[int, str]] = {}


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_path(version: int) -> str:
    return f"{MANIFEST_DIR}/{version:020d}.json"


def log_path(version: int) -> str:
    return f"_delta_log/{version:020d}.json"


def checkpoint_path(version: int) -> str:
    return f"_delta_log/{version:020d}.checkpoint.parquet"


def staged_path(digest: str) -> str:
    return f"{STAGED_DIR}/{digest}.json"


def stage(lake: Lake, body: ManifestBody | dict) -> str:
    """Stage a manifest body before its commit; returns the digest to put in the commit info.

    On S3 the body records the encryption S3 applied to the files it adds (``encryption``).
    """
    body = body.to_dict() if isinstance(body, ManifestBody) else body
    if lake.is_s3 and body.get("files_added"):
        from pipeline.custody.encryption import observed

        body["encryption"] = observed(lake, [f["path"] for f in body["files_added"]])
    data = canonical_json(body)
    digest = sha256_hex(data)
    lake.write_bytes(staged_path(digest), data)
    return digest


def read_manifest(lake: Lake, version: int) -> dict | None:
    if not lake.exists(manifest_path(version)):
        return None
    return json.loads(lake.read_bytes(manifest_path(version)))


def sealed_versions(lake: Lake) -> list[int]:
    out = []
    for rel in lake.list_files(MANIFEST_DIR):
        name = rel.rsplit("/", 1)[-1]
        if "/staged/" not in rel and name.endswith(".json") and name[:-5].isdigit():
            out.append(int(name[:-5]))
    return sorted(out)


def seal(lake: Lake, dt: DeltaTable | None = None, head: int | None = None, full: bool = False) -> list[int]:
    """Write the manifest of every committed version that has none yet, oldest first.

    ``head``: seal up to this version (a commit just made) without reloading the table. The cost
    does not grow with the number of versions: a process resumes from the newest manifest it sealed,
    and a fresh one finds the newest sealed manifest by probing back from the head (the versions a
    crash left unsealed are the newest ones). ``full`` lists every manifest instead, so holes anywhere
    in the chain are sealed too (``kbak validate --repair``).
    """
    if head is None:
        if dt is None:
            dt = DeltaTable(lake.uri, storage_options=lake.storage_options or None)
        else:
            dt.update_incremental()
        head = dt.version()
    written: list[int] = []
    # Resume from the newest manifest this process sealed: a long-running ingest then checks and
    # reads only the versions committed since, not the whole chain.
    cached = _SEALED_HEAD.get(lake.uri)
    newest = None if full or (cached and cached[0] <= head) else _newest_sealed(lake, head)
    if cached and cached[0] <= head and not full:
        start, prev_digest = cached[0] + 1, cached[1]
        have = {v for v in range(start, head + 1) if lake.exists(manifest_path(v))}
    elif newest is not None:
        start, prev_digest = newest, None
        have = {newest}
    else:
        start, prev_digest = 0, None
        have = set(sealed_versions(lake))
    missing = [v for v in range(start, head + 1) if v not in have]
    if not missing:
        if head >= start and head in have:
            _SEALED_HEAD[lake.uri] = (head, sha256_hex(lake.read_bytes(manifest_path(head))))
        return written
    if missing[0] > start:  # start..missing[0]-1 are sealed: the chain continues from the last of them
        prev_digest = sha256_hex(lake.read_bytes(manifest_path(missing[0] - 1)))
    # (otherwise prev_digest is the cached head's digest, or None before version 0)
    for version in range(missing[0], head + 1):
        path = manifest_path(version)
        if version in have:
            prev_digest = sha256_hex(lake.read_bytes(path))
            continue
        if not lake.exists(log_path(version)):
            # Log entry expired (beyond log retention) or never existed: nothing to seal against.
            prev_digest = None
            continue
        log_bytes = lake.read_bytes(log_path(version))
        body, staged = _body_for(lake, log_bytes)
        if body.get("missing_staged_body") and lake.exists(path):
            # Another worker sealed it meanwhile (it removes the staged body only after sealing).
            prev_digest = sha256_hex(lake.read_bytes(path))
            continue
        manifest = {
            "format": FORMAT,
            "version": version,
            "body": body,
            "body_sha256": sha256_hex(canonical_json(body)),
            "delta_log_sha256": sha256_hex(log_bytes),
            "previous_manifest_sha256": prev_digest,
        }
        if lake.exists(checkpoint_path(version)):
            manifest["checkpoint_sha256"] = sha256_hex(lake.read_bytes(checkpoint_path(version)))
        data = canonical_json(manifest)
        # Never overwrite: a worker sealing the same version a moment earlier may have seen a checkpoint
        # that did not exist yet for us (or the reverse); the first manifest written is the chain's.
        if lake.write_new(path, data):
            written.append(version)
        else:
            data = lake.read_bytes(path)
        if staged:
            with contextlib.suppress(FileNotFoundError):
                lake.delete(staged)
        prev_digest = sha256_hex(data)
    if prev_digest is not None:
        _SEALED_HEAD[lake.uri] = (head, prev_digest)
    return written


def _newest_sealed(lake: Lake, head: int) -> int | None:
    """The newest version at or below ``head`` with a manifest, probing back from ``head``."""
    for version in range(head, -1, -1):
        if lake.exists(manifest_path(version)):
            return version
    return None


def commit_actions(log_bytes: bytes) -> list[dict]:
    """The actions of one Delta log entry (newline-delimited JSON)."""
    return [json.loads(line) for line in log_bytes.decode().splitlines() if line.strip()]


def commit_info(actions: list[dict]) -> dict:
    return next((a["commitInfo"] for a in actions if "commitInfo" in a), {})


def read_staged(lake: Lake, digest: str) -> dict | None:
    """The staged body with this digest, if it is still there and intact."""
    try:
        data = lake.read_bytes(staged_path(digest))
    except (FileNotFoundError, OSError):
        return None
    return json.loads(data) if sha256_hex(data) == digest else None


def _body_for(lake: Lake, log_bytes: bytes) -> tuple[dict, str | None]:
    """The staged body this version's commit names, or one built from the log entry itself."""
    actions = commit_actions(log_bytes)
    info = commit_info(actions)
    digest = info.get(BODY_DIGEST_KEY)
    if digest:
        body = read_staged(lake, digest)
        if body is not None:
            return body, staged_path(digest)
    return _body_from_log(lake, actions, info, missing_staged=digest), None


def _body_from_log(lake: Lake, actions: list[dict], info: dict, missing_staged: str | None) -> dict:
    added, removed = [], []
    for action in actions:
        if "add" in action:
            add = action["add"]
            rel = _unquote(add["path"])
            stats = json.loads(add.get("stats") or "{}")
            sha = sha256_hex(lake.read_bytes(rel)) if lake.exists(rel) else None
            added.append(FileEntry(rel, add.get("size"), stats.get("numRecords"), sha))
        elif "remove" in action:
            rem = action["remove"]
            rel = _unquote(rem["path"])
            entry = FileEntry(rel, rem.get("size"))
            if lake.exists(rel):  # removed files stay in storage until vacuumed
                data = lake.read_bytes(rel)
                entry.sha256, entry.records = sha256_hex(data), _parquet_rows(data)
            removed.append(entry)
    return ManifestBody(
        operation=info.get(InfoKey.OPERATION) or info.get("operation", "UNKNOWN"),
        backup_id=info.get(InfoKey.BACKUP_ID),
        created_at=iso_ms(info.get("timestamp")),
        created_by=info.get(InfoKey.CREATED_BY) or info.get("engineInfo") or info.get("clientVersion"),
        source_cluster=info.get(InfoKey.SOURCE_CLUSTER),
        files_added=added,
        files_removed=removed,
        partitions=info.get(InfoKey.PARTITIONS) or [],
        gaps=info.get(InfoKey.GAPS) or [],
        sealed_from_log=True,
        missing_staged_body=missing_staged,
    ).to_dict()


def _parquet_rows(data: bytes) -> int | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(pa.BufferReader(data)).num_rows
    except Exception:  # not Parquet (or corrupt): the checksum still records what was there
        return None


def _unquote(path: str) -> str:
    from urllib.parse import unquote

    return unquote(path)
