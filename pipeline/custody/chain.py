"""Reading the custody record of every version straight from storage: log entry, manifest, staged body.

``list``, ``describe``, ``validate`` and ``report`` all start here. Nothing is taken from deltalake's
view of the log: the log entries and manifests are read as bytes, so what is checked is what is
stored.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

from pipeline.core.errors import NotAnArchiveError
from pipeline.core.storage import Lake, storage_error
from pipeline.core.table import log_entry_problem
from pipeline.custody.manifest import (
    BODY_DIGEST_KEY,
    MANIFEST_DIR,
    InfoKey,
    ManifestBody,
    commit_actions,
    commit_info,
    log_path,
    manifest_path,
    read_staged,
    sealed_versions,
    sha256_hex,
)

LOG_DIR = "_delta_log"
READ_THREADS = 16


@dataclass
class VersionRecord:
    """What storage holds for one table version."""

    version: int
    log_bytes: bytes | None = None
    log_error: str | None = None  # the log entry is not valid JSON (truncated, overwritten): what is wrong
    manifest_bytes: bytes | None = None
    manifest: dict | None = None  # parsed; None when missing or not JSON
    manifest_error: str | None = None
    staged_body: dict | None = None  # the staged body the commit names, when not sealed yet
    actions: list[dict] = field(default_factory=list)

    @property
    def info(self) -> dict:
        return commit_info(self.actions)

    @property
    def body_digest(self) -> str | None:
        """The manifest body digest the Delta commit itself carries (kbak commits only)."""
        return self.info.get(BODY_DIGEST_KEY)

    @property
    def status(self) -> str:
        """log-corrupt | sealed | unsealed (commit made, manifest pending, staged body intact) | missing."""
        if self.log_error is not None:
            return "log-corrupt"
        if self.manifest_bytes is not None:
            return "sealed"
        return "unsealed" if self.staged_body is not None else "missing"

    @property
    def body(self) -> dict | None:
        """The manifest body as stored: from the sealed manifest, else from the staged body."""
        if self.manifest is not None and isinstance(self.manifest.get("body"), dict):
            return self.manifest["body"]
        return self.staged_body

    @cached_property
    def manifest_body(self) -> ManifestBody:
        """The manifest body, typed (empty, operation "", when the version has none)."""
        return ManifestBody.from_dict(self.body)

    @property
    def manifest_sha256(self) -> str | None:
        return sha256_hex(self.manifest_bytes) if self.manifest_bytes is not None else None

    @property
    def is_kbak(self) -> bool:
        return InfoKey.OPERATION in self.info


def log_versions(lake: Lake) -> list[int]:
    out = []
    for rel in lake.list_files(LOG_DIR):
        name = rel.rsplit("/", 1)[-1]
        stem = name[: -len(".json")] if name.endswith(".json") else ""
        if stem.isdigit() and rel.count("/") == 1:
            out.append(int(stem))
    return sorted(out)


def is_archive(lake: Lake) -> bool:
    return bool(lake.list_files(LOG_DIR))


def load_chain(lake: Lake, versions: list[int] | None = None) -> list[VersionRecord]:
    """Every version's record, oldest first (the union of log entries and manifests found)."""
    try:
        logs = set(log_versions(lake))
    except OSError as exc:  # the first request every custody command makes: name an unreachable endpoint
        raise storage_error(lake, exc) or exc from None
    if not logs and not lake.list_files(MANIFEST_DIR):
        if lake.bucket_missing():
            raise NotAnArchiveError(f"bucket {lake.bucket} of lake {lake.uri} does not exist")
        raise NotAnArchiveError(f"no kbak archive at {lake.uri} (no Delta log there)")
    sealed = set(sealed_versions(lake))
    if not sealed and 0 in logs:
        _refuse_a_foreign_table(lake)
    if versions is None:  # every version from the oldest kept to the newest, holes included
        found = logs | sealed
        wanted = list(range(min(found), max(found) + 1)) if found else []
    else:
        wanted = sorted(versions)

    def load(version: int) -> VersionRecord:
        rec = VersionRecord(version)
        if version in logs:
            rec.log_bytes = _read(lake, log_path(version))
            if rec.log_bytes is not None:
                rec.log_error = log_entry_problem(rec.log_bytes)
                rec.actions = [] if rec.log_error else commit_actions(rec.log_bytes)
        if version in sealed:
            rec.manifest_bytes = _read(lake, manifest_path(version))
            if rec.manifest_bytes is not None:
                try:
                    parsed = json.loads(rec.manifest_bytes)
                    rec.manifest = parsed if isinstance(parsed, dict) else None
                    if rec.manifest is None:
                        rec.manifest_error = "not a JSON object"
                except (ValueError, UnicodeDecodeError) as exc:
                    rec.manifest_error = f"not valid JSON ({exc})"
        if rec.manifest_bytes is None and rec.body_digest:
            rec.staged_body = read_staged(lake, rec.body_digest)
        return rec

    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        return list(pool.map(load, wanted))


def _refuse_a_foreign_table(lake: Lake) -> None:
    """A Delta table kbak did not create (no manifest anywhere, a first commit without kbak's marker).

    Without this, ``list``/``describe``/``validate`` would report another tool's table as a kbak
    archive whose every manifest is missing: a false alarm of tampering, for a mistyped ``--lake``.
    """
    first = _read(lake, log_path(0))
    if first is None or log_entry_problem(first):
        return  # unreadable: validate reports the log entry itself
    if InfoKey.OPERATION not in commit_info(commit_actions(first)):
        raise NotAnArchiveError(f"{lake.uri} is a Delta table but not a kbak archive: kbak did not create it")


def _read(lake: Lake, rel: str) -> bytes | None:
    try:
        return lake.read_bytes(rel)
    except FileNotFoundError:
        return None
