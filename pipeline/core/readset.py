"""Which data files kbak's readers read for a table version, once erasure and vacuum have touched the lake.

Delta's own file list of an old version names files as they were written. After ``kbak erase`` some of
them hold an erased subject: erasure writes a scrubbed replacement of every such file (current or only
referenced by older versions) and records ``original -> replacement`` (``None`` when nothing is left) in
its custody manifest (``files_scrubbed``). After ``kbak vacuum`` some are gone from storage (erased
originals, files past their retention policy). kbak's readers (``pipeline.query.engine.connect``, hence
``kbak query``, the notebooks and the Python API; replay's selection through ``read_paths``) read version
V as: V's Delta file list, every path replaced by its latest replacement, files no longer in storage dropped.

The current version never needs this (erasure removes originals from it and adds their replacements),
so the engine keeps DuckDB's ``delta_scan`` for it; an older version goes through ``version_files``.

The mapping is read from ``_kbak/erasure/readset.json``, an index erasure maintains next to its
manifests (the chain is the truth; ``kbak validate`` compares the two). An entry is written *pending*
before its commit, naming a nonce that the commit carries in its commit info, and marked committed
after: readers apply a pending entry only when its commit is in the log, so a crash between the two
writes neither shows erased records nor hides records an uncommitted erasure would have removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pipeline.core.storage import Lake

INDEX = "_kbak/erasure/readset.json"
NONCE_KEY = "kbak.erasure_nonce"


@dataclass(frozen=True)
class VersionFiles:
    """The files (lake-relative) a reader reads for one version, and what changed from Delta's list."""

    files: list[str]
    replaced: int
    dropped: int


def load_index(lake: Lake) -> list[dict]:
    """The index's entries, oldest first ([] when the lake has no erasures)."""
    if not lake.exists(INDEX):
        return []
    return json.loads(lake.read_bytes(INDEX)).get("erasures", [])


def write_index(lake: Lake, entries: list[dict]) -> None:
    lake.write_bytes(INDEX, json.dumps({"format": "kbak-readset/1", "erasures": entries}, indent=1).encode())


def replacements(lake: Lake, entries: list[dict] | None = None) -> dict[str, str | None]:
    """original -> latest replacement (``None``: nothing left), from committed (or found) entries."""
    entries = load_index(lake) if entries is None else entries
    out: dict[str, str | None] = {}
    for e in entries:
        if e.get("version") is None and not _pending_committed(lake, e):
            continue
        out.update(e.get("replacements") or {})
    return out


def resolve(path: str, mapping: dict[str, str | None]) -> str | None:
    """Follow ``path`` through the mapping to the file that now holds its records (None: nothing)."""
    seen = set()
    current: str | None = path
    while current is not None and current in mapping and current not in seen:
        seen.add(current)
        current = mapping[current]
    return current


def version_files(lake: Lake, dt) -> VersionFiles | None:
    """The files to read for ``dt``'s loaded version, or None when Delta's own list is right as it is."""
    import pyarrow as pa  # only for time travel: the latest version's query never loads it

    paths = pa.table(dt.get_add_actions(flatten=True)).column("path").to_pylist()
    resolved, present = _resolved(lake, paths)
    files = [r for r in resolved if r is not None and r in present]
    replaced = sum(1 for p, r in zip(paths, resolved, strict=True) if r != p)
    dropped = len(paths) - len(files)
    if not replaced and not dropped:
        return None
    return VersionFiles(sorted(set(files)), replaced, dropped)


def read_paths(lake: Lake, paths: list[str]) -> list[str | None]:
    """Each of a version's Delta file paths as kbak's readers read it: its latest replacement, or None
    when nothing is left of it or the file is no longer in storage (``version_files``, path by path)."""
    resolved, present = _resolved(lake, paths)
    return [r if r is not None and r in present else None for r in resolved]


def _resolved(lake: Lake, paths: list[str]) -> tuple[list[str | None], set[str]]:
    mapping = replacements(lake)
    return [resolve(p, mapping) for p in paths], set(lake.list_files()) if paths else set()


def _pending_committed(lake: Lake, entry: dict) -> bool:
    """Whether a pending entry's commit exists: its nonce is in a log entry after ``read_version``."""
    nonce = entry.get("nonce")
    start = int(entry.get("read_version", -1)) + 1
    if not nonce:
        return False
    version = start
    while lake.exists(f"_delta_log/{version:020d}.json"):
        if nonce.encode() in lake.read_bytes(f"_delta_log/{version:020d}.json"):
            return True
        version += 1
    return False
