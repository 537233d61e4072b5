"""Validation of erasure's scrubbed replacements and of the readset index that kbak's readers follow.

The chain is the truth: each ``erase`` manifest's ``files_scrubbed`` maps originals to replacements.
The index (``_kbak/erasure/readset.json``) must say the same, or readers of older versions would read
the wrong files; and (deep) each replacement readers use must still hash to the SHA-256 recorded.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.core.readset import INDEX, load_index, replacements
from pipeline.core.storage import Lake
from pipeline.custody.chain import VersionRecord
from pipeline.custody.checks import Check
from pipeline.custody.manifest import Operation, manifest_path, sha256_hex

READSET_INDEX = Check.READSET_INDEX
SCRUBBED_REPLACEMENT = Check.SCRUBBED_REPLACEMENT

Problem = tuple[Check, str, str, str]  # check, subject, message, severity


def scrub_problems(lake: Lake, chain: list[VersionRecord], deep: bool) -> Iterator[Problem]:
    scrubbed: list[tuple[int, dict]] = []
    for rec in chain:
        body = rec.body or {}
        if body.get("operation") == Operation.ERASE:
            scrubbed.extend((rec.version, s) for s in body.get("files_scrubbed") or [])
    if not scrubbed and not lake.exists(INDEX):
        return
    try:
        entries = load_index(lake)
    except ValueError as exc:
        yield READSET_INDEX, INDEX, f"not readable: {exc}", "error"
        return
    in_index = replacements(lake, entries)
    for version, s in scrubbed:
        if s["original"] not in in_index or in_index[s["original"]] != s.get("replacement"):
            if any(s2["original"] == s["original"] and v2 > version for v2, s2 in scrubbed):
                continue  # a later erasure scrubbed it again
            yield (
                READSET_INDEX,
                INDEX,
                f"erase version {version} replaced {s['original']} by {s.get('replacement')}; the index says "
                f"{in_index.get(s['original'], 'nothing')} (a rerun of kbak erase rebuilds it from the chain)",
                "error",
            )
    named = {s["original"] for _v, s in scrubbed}
    for original in sorted(set(in_index) - named):
        yield READSET_INDEX, INDEX, f"maps {original}, which no erase manifest scrubbed", "error"
    for e in entries:
        if e.get("version") is None and e.get("nonce"):
            yield READSET_INDEX, INDEX, f"an erasure of request {e.get('request_id')!r} never committed", "warning"
    if not deep:
        return
    superseded = {s["original"] for _v, s in scrubbed}
    vacuumed = {
        f.get("path")
        for rec in chain
        if (rec.body or {}).get("operation") == Operation.VACUUM
        for f in (rec.body or {}).get("files_deleted") or []
    }
    for version, s in scrubbed:
        rel = s.get("replacement")
        if rel is None or rel in superseded or rel in vacuumed:
            continue  # nothing left, scrubbed again since, or deleted on the record (retention)
        try:
            ok = sha256_hex(lake.read_bytes(rel)) == s.get("replacement_sha256")
        except FileNotFoundError:
            yield SCRUBBED_REPLACEMENT, rel, f"missing (erase version {version}, {manifest_path(version)})", "error"
            continue
        if not ok:
            yield SCRUBBED_REPLACEMENT, rel, f"SHA-256 differs from erase version {version}'s manifest", "error"
