"""Legal-discovery helpers for notebooks: export an evidence set with SHA-256s, summarise custody.

An evidence set is the result of one named query written in one or more formats, plus a
``SHA256SUMS`` file (``sha256sum -c`` format) so a recipient can check every file they received.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pipeline.core.storage import Lake
from pipeline.core.table import open_table
from pipeline.custody.manifest import manifest_path, read_manifest, sealed_versions, sha256_hex
from pipeline.query.engine import table_state
from pipeline.query.export import write_result
from pipeline.query.named import bind, get_query

CHECKSUMS = "SHA256SUMS"


@dataclass(frozen=True)
class EvidenceFile:
    path: Path
    format: str
    rows: int
    bytes: int
    sha256: str


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_evidence(
    con: duckdb.DuckDBPyConnection,
    query: str,
    params: Mapping[str, Any],
    directory: Path | str,
    formats: tuple[str, ...] = ("parquet", "jsonl"),
    stem: str | None = None,
) -> list[EvidenceFile]:
    """Write ``query``'s result once per format into ``directory`` and record each file's SHA-256."""
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    q = get_query(query)
    bound = bind(con, q, params)
    files = []
    for fmt in formats:
        path = out_dir / f"{stem or q.name}.{fmt}"
        rows = write_result(con, q.sql, bound, fmt, path)
        files.append(EvidenceFile(path, fmt, int(rows or 0), path.stat().st_size, file_sha256(path)))
    sums = out_dir / CHECKSUMS
    lines = [f"{f.sha256}  {f.path.name}\n" for f in files]
    if sums.exists():  # keep earlier entries of other exports into the same directory
        names = {f.path.name for f in files}
        lines = [ln for ln in sums.read_text().splitlines(keepends=True) if ln.split()[-1] not in names] + lines
    sums.write_text("".join(lines))
    return files


def custody_summary(lake: Lake, con: duckdb.DuckDBPyConnection) -> dict:
    """What the evidence was drawn from: table version, its data files, and that version's manifest."""
    state = table_state(con)
    dt = open_table(lake, state.version)
    sealed = sealed_versions(lake)
    manifest = read_manifest(lake, state.version)
    manifest_sha = sha256_hex(lake.read_bytes(manifest_path(state.version))) if manifest else None
    return {
        "lake": lake.uri,
        "table_version": state.version,
        "as_of": state.as_of,
        "reader": state.reader,
        "data_files": len(dt.file_uris()),
        "sealed_manifests": len(sealed),
        "first_sealed_version": sealed[0] if sealed else None,
        "manifest_sha256": manifest_sha,
        "manifest_operation": (manifest or {}).get("body", {}).get("operation"),
        "previous_manifest_sha256": (manifest or {}).get("previous_manifest_sha256"),
    }
