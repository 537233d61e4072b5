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

Sealing is deterministic, so two workers sealing the same version write identical bytes. The
staged body is removed only after its manifest is written, so a worker that finds the staged body
gone re-checks for the manifest instead of building a different one from the log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from deltalake import DeltaTable

from pipeline.core.storage import Lake

MANIFEST_DIR = "_kbak/custody"
STAGED_DIR = f"{MANIFEST_DIR}/staged"
FORMAT = "kbak-custody/1"
BODY_DIGEST_KEY = "kbak.manifest_body_sha256"

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


def stage(lake: Lake, body: dict) -> str:
    """Stage a manifest body before its commit; returns the digest to put in the commit info.

    On S3 the body records the encryption S3 applied to the files it adds (``encryption``).
    """
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
        lake.write_bytes(path, data)
        if staged:
            with contextlib.suppress(FileNotFoundError):
                lake.delete(staged)
        prev_digest = sha256_hex(data)
        written.append(version)
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
            added.append({"path": rel, "size": add.get("size"), "records": stats.get("numRecords"), "sha256": sha})
        elif "remove" in action:
            rem = action["remove"]
            rel = _unquote(rem["path"])
            entry = {"path": rel, "size": rem.get("size"), "records": None, "sha256": None}
            if lake.exists(rel):  # removed files stay in storage until vacuumed
                data = lake.read_bytes(rel)
                entry.update(sha256=sha256_hex(data), records=_parquet_rows(data))
            removed.append(entry)
    body = {
        "operation": info.get("kbak.operation") or info.get("operation", "UNKNOWN"),
        "backup_id": info.get("kbak.backup_id"),
        "created_at": _iso_ms(info.get("timestamp")),
        "created_by": info.get("kbak.created_by") or info.get("engineInfo") or info.get("clientVersion"),
        "source_cluster": info.get("kbak.source_cluster"),
        "files_added": added,
        "files_removed": removed,
        "partitions": info.get("kbak.partitions") or [],
        "gaps": info.get("kbak.gaps") or [],
        "sealed_from_log": True,
    }
    if missing_staged:
        body["missing_staged_body"] = missing_staged
    return body


def _parquet_rows(data: bytes) -> int | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(pa.BufferReader(data)).num_rows
    except Exception:  # not Parquet (or corrupt): the checksum still records what was there
        return None


def _iso_ms(epoch_ms: int | None) -> str | None:
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")


def _unquote(path: str) -> str:
    from urllib.parse import unquote

    return unquote(path)
