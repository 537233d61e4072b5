"""``kbak erase``: remove a data subject's records from the archive at every version, in one commit.

1. Every data file any version references is resolved to the file that holds its records now (earlier
   erasures' replacements: ``pipeline.core.readset``); those of the selected topics that still exist are
   scanned once with DuckDB for the request's selectors (OR).
2. Matching records under an open case hold are refused (exit 1, nothing erased) unless
   ``except_held``, which erases the rest and reports what it kept.
3. Each file holding matching records is rewritten without them (every other record byte for byte and
   in order) next to the original. Current files are swapped in the Delta table (remove + add);
   files only older versions reference get a replacement outside the Delta log, recorded in the
   manifest (``files_scrubbed``) and the readset index, which kbak's readers substitute at any version.
4. One record of custody (operation ``erase``): request id, reason, who and when, files removed, added
   and scrubbed with SHA-256, erased offsets per partition, and the selectors only as keyed hashes.
   Nothing identifying the subject reaches the Delta log (no predicate: the commit is plain actions).

The originals stay in storage until ``kbak vacuum`` deletes them (at once, whatever the table's deleted-
file retention), unless S3 Object Lock keeps them until their retain-until date.
"""

from __future__ import annotations

import io
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.errors import KbakError
from pipeline.core.readset import NONCE_KEY, load_index, resolve, write_index
from pipeline.core.schema import RECORD_SCHEMA
from pipeline.core.storage import Lake
from pipeline.core.subject import lake_secret
from pipeline.core.table import open_table
from pipeline.custody.cases import CARRIED, carry_legal_holds, held_rows, record_carried
from pipeline.custody.chain import load_chain
from pipeline.custody.manifest import Operation, sha256_hex
from pipeline.erasure.selectors import Selector

if TYPE_CHECKING:
    from pipeline.ingest.writer import DataFile

OPERATION = Operation.ERASE.value
NO_SPLIT = 1 << 62  # a replacement is one file, however large its original was


@dataclass
class Target:
    """A file holding matching records now (an original, or an earlier erasure's replacement)."""

    path: str
    topic: str
    day: str
    current: dict | None  # the current snapshot's add-action row when the current version references it
    offsets: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))  # to erase, per partition


@dataclass
class ErasePlan:
    """What an erasure would do; ``execute`` does it."""

    lake: Lake
    request_id: str
    reason: str
    selectors: list[Selector]
    read_version: int
    targets: dict[str, Target]
    erase: set[tuple[str, int, int]]  # (topic, partition, offset)
    kept: dict[str, int]  # case id -> held records not erased
    scanned_files: int
    committed: list[dict] = field(default_factory=list)  # the readset index as the chain says it is

    def summary(self) -> dict:
        per: Counter = Counter((t, p) for t, p, _o in self.erase)
        current = [t for t in self.targets.values() if t.current is not None]
        return {
            "lake": self.lake.uri,
            "request_id": self.request_id,
            "records": len(self.erase),
            "partitions": [{"topic": t, "partition": p, "records": n} for (t, p), n in sorted(per.items())],
            "files_scanned": self.scanned_files,
            "files_to_rewrite": {"current": len(current), "historical": len(self.targets) - len(current)},
            "held_kept": [{"case": c, "records": n} for c, n in sorted(self.kept.items())],
        }


def plan(
    lake: Lake,
    request_id: str,
    reason: str,
    selectors: list[Selector],
    topics: list[str] | None = None,
    except_held: bool = False,
) -> ErasePlan:
    """Find the request's records in every file of every version; refuse held ones (see module doc)."""
    import re

    if not selectors:
        raise KbakError("give at least one selector: --key, --json-field FIELD=VALUE or --header NAME=VALUE")
    if not request_id.strip():
        raise KbakError("--request-id is required (the erasure request's reference)")
    if not reason.strip():
        raise KbakError("--reason is required (why the records are erased: recorded in the chain)")
    patterns = []
    for t in topics or []:
        try:
            patterns.append(re.compile(t))
        except re.error as exc:
            raise KbakError(f"--topics {t!r} is not a valid regular expression: {exc}") from None
    dt = open_table(lake)
    read_version = dt.version()
    current = {r["path"]: r for r in pa.table(dt.get_add_actions(flatten=True)).to_pylist()}
    chain = load_chain(lake)
    mapping = scrubbed_mapping(chain)
    referenced: dict[str, dict] = {}  # every path any version added -> its partition values
    for rec in chain:
        for a in rec.actions:
            if "add" in a:
                referenced.setdefault(_unquote(a["add"]["path"]), a["add"].get("partitionValues") or {})
    for path, row in current.items():
        referenced.setdefault(path, {"topic": row.get("partition.topic"), "date": str(row.get("partition.date"))})
    present = set(lake.list_files())
    targets: dict[str, Target] = {}
    for path, pv in referenced.items():
        now = resolve(path, mapping)
        topic = pv.get("topic") or ""
        if now is None or now not in present or (patterns and not any(p.fullmatch(topic) for p in patterns)):
            continue
        targets.setdefault(now, Target(now, topic, str(pv.get("date")), current.get(now)))
    rows = _scan(lake, list(targets), selectors)
    unique = _unique(rows)
    held = held_rows(lake, unique)
    kept: Counter = Counter(c for ids in held for c in ids)
    held_keys = {
        (unique["topic"][i].as_py(), unique["partition"][i].as_py(), unique["offset"][i].as_py())
        for i, ids in enumerate(held)
        if ids
    }
    if held_keys and not except_held:
        cases = ", ".join(f"{c} ({n} records)" for c, n in sorted(kept.items()))
        raise KbakError(
            f"{len(held_keys)} of the {unique.num_rows} matching records are under case hold: {cases}; "
            "nothing erased (release the cases, or --except-held to erase the rest)"
        )
    erase: set[tuple[str, int, int]] = set()
    by_file: dict[str, Target] = {}
    for f, t, p, o in zip(*(rows[c].to_pylist() for c in ("file", "topic", "partition", "offset")), strict=True):
        if (t, p, o) in held_keys:
            continue
        erase.add((t, p, o))
        target = targets[f]
        target.offsets[p].add(o)
        by_file[f] = target
    index = index_entries(chain)
    return ErasePlan(lake, request_id, reason, selectors, read_version, by_file, erase, dict(kept), len(targets), index)


def execute(p: ErasePlan) -> dict:
    """Write the replacements, commit once, and record the readset; returns the summary with the version."""
    from deltalake.transaction import AddAction

    from pipeline.custody.operation import commit_operation, remove_action

    lake = p.lake
    out = p.summary()
    if not p.erase:
        if load_index(lake) != p.committed:  # a crash after an earlier commit, or a failed attempt: repair
            write_index(lake, p.committed)
        return {**out, "version": None}
    secret = lake_secret(lake)
    scrubbed, removed, added, adds, removes = [], [], [], [], []
    replacements: dict[str, str | None] = {}
    now_ms = int(time.time() * 1000)
    targets = sorted(p.targets.values(), key=lambda t: t.path)
    with ThreadPoolExecutor(max_workers=16 if lake.is_s3 else 4) as pool:
        rewritten = list(pool.map(lambda t: _rewrite(lake, t), targets))
    for target, (original, new, removed_n) in zip(targets, rewritten, strict=True):
        replacement = new.path if new else None
        scrubbed.append(
            {
                "original": target.path,
                "replacement": replacement,
                "original_sha256": original["sha256"],
                "replacement_sha256": new.sha256 if new else None,
                "records_removed": removed_n,
                "current": target.current is not None,
            }
        )
        replacements[target.path] = replacement  # older paths reach it through earlier entries
        if target.current is not None:
            removed.append(original)
            removes.append(remove_action(target.current, now_ms))
            if new is not None:
                added.append(_file_entry(new.path, new.size, new.records, new.sha256, target))
                adds.append(AddAction(new.path, new.size, new.partition_values, new.modification_time, True, new.stats))
    body = {
        "request_id": p.request_id,
        "reason": p.reason,
        "selectors": [{"kind": s.kind, "hmac": s.hmac(secret)} for s in p.selectors],
        "records_erased": len(p.erase),
        "erased": out["partitions"],
        "removed_offsets": removed_offsets(p.erase, "erased"),
        "held_kept": out["held_kept"],
        "files_removed": removed,
        "files_added": added,
        "files_scrubbed": scrubbed,
    }
    carried = carry_legal_holds(lake, {s["original"]: s["replacement"] for s in scrubbed})
    if carried:
        body[CARRIED] = carried
    nonce = uuid.uuid4().hex
    entries = p.committed  # rebuilt from the chain: drops failed attempts, repairs a crash after a commit
    pending = {"request_id": p.request_id, "nonce": nonce, "read_version": p.read_version, "version": None}
    write_index(lake, [*entries, {**pending, "replacements": replacements}])
    dt = open_table(lake)
    version = commit_operation(
        lake,
        dt,
        OPERATION,
        body,
        add=adds,
        remove=removes,
        metadata={NONCE_KEY: nonce, "kbak.request_id": p.request_id},
    )
    write_index(lake, [*entries, {"request_id": p.request_id, "version": version, "replacements": replacements}])
    record_carried(lake, carried)
    return {**out, "version": version, "files_scrubbed": len(scrubbed)}


def _rewrite(lake: Lake, target: Target) -> tuple[dict, DataFile | None, int]:
    """Write ``target`` without its erased records (the rest byte for byte, in order) next to it.

    Returns the original's file entry, the replacement (None when nothing is left) and the records removed.
    """
    from pipeline.ingest.writer import write_files

    data = lake.read_bytes(target.path)
    table = pq.read_table(io.BytesIO(data))
    keep = np.ones(table.num_rows, dtype=bool)
    part, offset = table["partition"].to_numpy(), table["offset"].to_numpy()
    for partition, offsets in target.offsets.items():
        keep &= ~((part == partition) & np.isin(offset, np.fromiter(offsets, np.int64)))
    rest = table.filter(pa.array(keep))
    new = None
    if rest.num_rows:
        (new,) = write_files(lake, _with_partitions(rest, target.topic, target.day), target_file_size=NO_SPLIT)
    original = _file_entry(target.path, len(data), table.num_rows, sha256_hex(data), target)
    return original, new, int((~keep).sum())


def index_entries(chain) -> list[dict]:
    """The readset index's entries, one per erase version of the chain (see ``pipeline.core.readset``)."""
    out = []
    for rec in chain:
        body = rec.body or {}
        if body.get("operation") == OPERATION:
            mapping = {s["original"]: s.get("replacement") for s in body.get("files_scrubbed") or []}
            out.append({"request_id": body.get("request_id"), "version": rec.version, "replacements": mapping})
    return out


def scrubbed_mapping(chain) -> dict[str, str | None]:
    """original -> replacement from every erase manifest of the chain (later ones override)."""
    mapping: dict[str, str | None] = {}
    for rec in chain:
        body = rec.body or {}
        if body.get("operation") == OPERATION:
            for s in body.get("files_scrubbed") or []:
                mapping[s["original"]] = s.get("replacement")
    return mapping


def removed_offsets(keys: set[tuple[str, int, int]], reason: str) -> list[dict]:
    """Contiguous runs of removed (topic, partition, offset), one entry per run."""
    out: list[dict] = []
    for t, p, o in sorted(keys):
        last = out[-1] if out else None
        if last and (last["topic"], last["partition"]) == (t, p) and last["last_offset"] == o - 1:
            last["last_offset"] = o
            last["records"] += 1
        else:
            out.append(
                {"topic": t, "partition": p, "first_offset": o, "last_offset": o, "records": 1, "reason": reason}
            )
    return out


def _scan(lake: Lake, files: list[str], selectors: list[Selector]) -> pa.Table:
    """(file, topic, partition, offset, timestamp, key) of every matching row of ``files``."""
    from pipeline.query.engine import connect_files, file_uri

    cols = ["file", "topic", "partition", "offset", "timestamp", "key"]
    if not files:
        return pa.table({c: [] for c in cols})
    con = connect_files(lake, files, filename=True)
    try:
        where = " OR ".join(f"({s.predicate()})" for s in selectors)
        rows = con.execute(
            f'SELECT filename AS file, topic, "partition", "offset", "timestamp", key FROM records WHERE {where}'
        ).to_arrow_table()
    finally:
        con.close()
    back = {file_uri(lake, f): f for f in files}
    return rows.set_column(0, "file", pa.array([back[u] for u in rows["file"].to_pylist()], pa.string()))


def _unique(rows: pa.Table) -> pa.Table:
    """One row per (topic, partition, offset): a record copied by compaction is one record."""
    seen: dict[tuple, int] = {}
    for i, k in enumerate(zip(*(rows[c].to_pylist() for c in ("topic", "partition", "offset")), strict=True)):
        seen.setdefault(k, i)
    return rows.take(pa.array(sorted(seen.values()), pa.int64())).select(
        ["topic", "partition", "offset", "timestamp", "key"]
    )


def _with_partitions(rows: pa.Table, topic: str, day: str) -> pa.Table:
    n = rows.num_rows
    cols = {
        "topic": pa.array([topic] * n, pa.string()),
        "date": pa.array([date.fromisoformat(day)] * n, pa.date32()),
    }
    arrays = [cols[f.name] if f.name in cols else rows[f.name] for f in RECORD_SCHEMA]
    return pa.Table.from_arrays(arrays, names=RECORD_SCHEMA.names).cast(RECORD_SCHEMA)


def _file_entry(path: str, size: int, records: int, sha: str, t: Target) -> dict:
    return {"path": path, "size": size, "records": records, "sha256": sha,
            "partition_values": {"topic": t.topic, "date": t.day}}  # fmt: skip


def _unquote(path: str) -> str:
    from urllib.parse import unquote

    return unquote(path)
