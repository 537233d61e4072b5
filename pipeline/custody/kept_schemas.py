"""Kept schema documents (``_kbak/schemas/<id>.json``) in the custody chain.

Ingest and ``kbak schemas import`` list each document they keep, with its SHA-256, in the manifest
of the commit that first needs it (``body["schemas"]``). Validation checks that every listed
document is still there and unchanged, and warns about documents no manifest lists (written by a run
that stopped before its commit; the next run that needs the schema lists it).
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.core.storage import Lake
from pipeline.custody.chain import VersionRecord
from pipeline.custody.checks import Check
from pipeline.custody.manifest import sha256_hex

SCHEMAS_DIR = "_kbak/schemas"
SCHEMA_DIGEST = Check.SCHEMA_SHA256
SCHEMA_LISTED = Check.SCHEMA_LISTED

Problem = tuple[str, str, str, str]  # check, subject, message, severity


def listed(chain: list[VersionRecord]) -> dict[str, tuple[int, str]]:
    """Document path -> (version, sha256) of the first manifest listing it."""
    out: dict[str, tuple[int, str]] = {}
    for rec in chain:
        for entry in (rec.body or {}).get("schemas") or []:
            if isinstance(entry, dict) and entry.get("path"):
                out.setdefault(entry["path"], (rec.version, entry.get("sha256") or ""))
    return out


def listed_ids(lake: Lake) -> set[int]:
    """Ids of the kept schemas some manifest lists (reads the chain: once per run that needs it)."""
    from pipeline.custody.chain import load_chain

    return {int(p.rsplit("/", 1)[-1].removesuffix(".json")) for p in listed(load_chain(lake))}


def kept_schema_problems(lake: Lake, chain: list[VersionRecord]) -> Iterator[Problem]:
    recorded = listed(chain)
    present = {p for p in lake.list_files(SCHEMAS_DIR) if p.endswith(".json")}
    for path, (version, digest) in sorted(recorded.items()):
        if path not in present:
            yield SCHEMA_DIGEST, path, f"listed by version {version} but missing from storage", "error"
            continue
        actual = sha256_hex(lake.read_bytes(path))
        if actual != digest:
            yield (
                SCHEMA_DIGEST,
                path,
                f"SHA-256 {actual[:16]}… differs from {digest[:16]}… recorded by version {version}",
                "error",
            )
    for path in sorted(present - set(recorded)):
        yield SCHEMA_LISTED, path, "no manifest lists this kept schema document", "warning"
