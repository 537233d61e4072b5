"""The archive's history from its custody manifests: ``kbak list`` (runs, coverage) and ``kbak describe``.

An ingest run is identified by the ``backup_id`` in its manifests (one run may make many commits);
any other operation (table creation, a foreign Delta writer) is a line of its own.
"""

from __future__ import annotations

from collections import defaultdict

from pipeline.core.errors import UsageError
from pipeline.core.storage import Lake
from pipeline.custody.chain import VersionRecord, load_chain
from pipeline.custody.manifest import FileEntry, InfoKey, Operation

# kbak's own operations whose added files are rewrites of records already archived, not new records.
_REWRITES = (Operation.COMPACT, Operation.ERASE, Operation.RETENTION)


def version_summary(rec: VersionRecord) -> dict:
    """Records, bytes and topics a version added, from its manifest body (or its commit info).

    ``records`` counts records archived (a compaction's or an erasure's rewritten files add none);
    ``records_removed`` the records erasure or retention took out of the table.
    """
    body = rec.manifest_body
    added = body.files_added
    records = sum(f.records or 0 for f in added) if added else int(rec.info.get(InfoKey.RECORDS) or 0)
    if body.operation in _REWRITES:
        records = 0
    removed = sum(int(r.get("records") or 0) for r in body.extra.get("removed_offsets") or [])
    topics = sorted({file_topic(f) for f in added} - {None})
    ranges = body.partitions
    return {
        "version": rec.version,
        "operation": body.operation or rec.info.get(InfoKey.OPERATION) or rec.info.get("operation") or "unknown",
        "backup_id": body.backup_id or rec.info.get(InfoKey.BACKUP_ID),
        "created_at": body.created_at,
        "records": records,
        "records_removed": removed,
        "bytes": sum(f.size or 0 for f in added),
        "files_added": len(added),
        "files_removed": len(body.files_removed),
        "topics": topics,
        "gaps": len(body.gaps),
        "status": rec.status,
        "first_timestamp_ms": min((p["first_timestamp_ms"] for p in ranges), default=None),
        "last_timestamp_ms": max((p["last_timestamp_ms"] for p in ranges), default=None),
    }


def file_topic(f: FileEntry) -> str | None:
    pv = f.partition_values or {}
    if pv.get("topic"):
        return pv["topic"]
    for part in str(f.path).split("/"):
        if part.startswith("topic="):
            return part[len("topic=") :]
    return None


def list_runs(chain: list[VersionRecord]) -> list[dict]:
    """One entry per ingest run (by backup_id) or other operation, newest last."""
    groups: dict[str, list[dict]] = {}
    for rec in chain:
        v = version_summary(rec)
        key = f"run:{v['backup_id']}" if v["backup_id"] else f"version:{rec.version}"
        groups.setdefault(key, []).append(v)
    runs = []
    for items in groups.values():
        statuses = {v["status"] for v in items}
        outcome = next((o for s, o in _OUTCOMES if s in statuses), "sealed")
        versions = [v["version"] for v in items]
        runs.append(
            {
                "backup_id": items[0]["backup_id"],
                "operation": items[0]["operation"],
                "first_version": min(versions),
                "last_version": max(versions),
                "commits": len(items),
                "created_at": min((str(v["created_at"]) for v in items if v["created_at"]), default=None),
                "records": sum(v["records"] for v in items),
                "records_removed": sum(v["records_removed"] for v in items),
                "bytes": sum(v["bytes"] for v in items),
                "topics": sorted({t for v in items for t in v["topics"]}),
                "gaps": sum(v["gaps"] for v in items),
                "first_timestamp_ms": min(
                    (v["first_timestamp_ms"] for v in items if v["first_timestamp_ms"]), default=None
                ),
                "last_timestamp_ms": max(
                    (v["last_timestamp_ms"] for v in items if v["last_timestamp_ms"]), default=None
                ),
                "outcome": outcome,
            }
        )
    return sorted(runs, key=lambda r: r["last_version"])


# A run's outcome is its worst version's status.
_OUTCOMES = (("log-corrupt", "log-corrupt"), ("missing", "manifest-missing"), ("unsealed", "unsealed"))


def coverage_parts(chain: list[VersionRecord], base: list[dict] | None = None) -> list[dict]:
    """Per (topic, partition): records, offset and time ranges archived (``base``: the same, from before)."""
    parts: dict[tuple[str, int], dict] = {
        (p["topic"], p["partition"]): {k: p[k] for k in _RANGE_KEYS} for p in base or []
    }
    for rec in chain:
        for r in (rec.body or {}).get("partitions") or []:
            key = (r["topic"], r["partition"])
            cur = parts.get(key)
            if cur is None:
                parts[key] = {k: r[k] for k in _RANGE_KEYS}
                continue
            cur["records"] += r["records"]
            for k in ("first_offset", "first_timestamp_ms"):
                cur[k] = min(cur[k], r[k])
            for k in ("last_offset", "last_timestamp_ms"):
                cur[k] = max(cur[k], r[k])
    return [{"topic": t, "partition": p, **r} for (t, p), r in sorted(parts.items())]


def coverage(chain: list[VersionRecord], base: list[dict] | None = None) -> list[dict]:
    """Per topic and partition: the offsets and record times archived, from the manifests' ranges.

    ``records`` is what the archive holds now: archived minus what erasure and retention removed
    (``removed``, from their ``removed_offsets``). ``base``: the ranges archived before ``chain``
    (a verified point's), whose removals ``chain`` must then include.
    """
    runs: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for rec in chain:
        for r in (rec.body or {}).get("removed_offsets") or []:
            runs[(r["topic"], r["partition"])].append((r["first_offset"], r["last_offset"]))
    parts = {(p["topic"], p["partition"]): {k: p[k] for k in _RANGE_KEYS} for p in coverage_parts(chain, base)}
    topics: dict[str, list[dict]] = defaultdict(list)
    for (topic, partition), r in sorted(parts.items()):
        gone = _union_size(runs.get((topic, partition), []))
        topics[topic].append({"partition": partition, **r, "records": r["records"] - gone, "removed": gone})
    return [
        {
            "topic": topic,
            "records": sum(p["records"] for p in ps),
            "first_timestamp_ms": min(p["first_timestamp_ms"] for p in ps),
            "last_timestamp_ms": max(p["last_timestamp_ms"] for p in ps),
            "partitions": ps,
        }
        for topic, ps in topics.items()
    ]


def _union_size(ranges: list[tuple[int, int]]) -> int:
    """Offsets covered by these inclusive ranges, each once (erasure may re-list what retention removed)."""
    total, end = 0, None
    for lo, hi in sorted(ranges):
        if end is not None and lo <= end:
            lo = end + 1
        if lo <= hi:
            total += hi - lo + 1
        end = hi if end is None else max(end, hi)
    return total


_RANGE_KEYS = ("records", "first_offset", "last_offset", "first_timestamp_ms", "last_timestamp_ms")


def head(chain: list[VersionRecord]) -> dict | None:
    """The newest sealed manifest: the head of the custody chain."""
    for rec in reversed(chain):
        if rec.manifest_bytes is not None:
            return {"version": rec.version, "manifest_sha256": rec.manifest_sha256}
    return None


def merge_runs(before: list[dict], after: list[dict]) -> list[dict]:
    """Runs listed up to a version, extended by the runs of the versions after it (a run may span both)."""
    out = {_run_key(r): dict(r) for r in before}
    for r in after:
        cur = out.get(_run_key(r))
        if cur is None:
            out[_run_key(r)] = dict(r)
            continue
        cur["last_version"] = max(cur["last_version"], r["last_version"])
        for k in ("commits", "records", "records_removed", "bytes", "gaps"):
            cur[k] = cur.get(k, 0) + r.get(k, 0)  # (a verified point written before records_removed lacks it)
        cur["topics"] = sorted(set(cur["topics"]) | set(r["topics"]))
        cur["created_at"] = (
            min(x for x in (cur["created_at"], r["created_at"]) if x)
            if (cur["created_at"] or r["created_at"])
            else None
        )
        for k, pick in (("first_timestamp_ms", min), ("last_timestamp_ms", max)):
            values = [x for x in (cur[k], r[k]) if x]
            cur[k] = pick(values) if values else None
        order = ("manifest-missing", "unsealed", "sealed")
        cur["outcome"] = min(cur["outcome"], r["outcome"], key=order.index)
    return sorted(out.values(), key=lambda r: r["last_version"])


def _run_key(run: dict) -> str:
    return f"run:{run['backup_id']}" if run["backup_id"] else f"version:{run['first_version']}"


def history(lake: Lake) -> dict:
    """``kbak list``: from the verified point on when there is one (see ``verified``), else the whole chain."""
    from pipeline.custody import verified

    point = verified.load(lake)
    since = verified.chain_since(lake, point) if point else None
    if point is None or since is None:
        chain = load_chain(lake)
        return {"lake": lake.uri, "head": head(chain), "runs": list_runs(chain), "topics": coverage(chain)}
    new = [r for r in since if r.version > point.version]
    return {
        "lake": lake.uri,
        "head": head(since),
        "runs": merge_runs(point.runs, list_runs(new)),
        "topics": coverage(point.prefix_records() + new, point.coverage_parts),
        "verified_point": point.version,
    }


def describe(lake: Lake, version: int | None = None, backup_id: str | None = None) -> dict:
    """Everything the manifest(s) of one version or one ingest run hold, checksums included."""
    if version is not None and backup_id is not None:
        raise UsageError("give --version or --backup-id, not both")
    chain = load_chain(lake)
    if not chain:
        raise UsageError(f"{lake.uri} has no versions yet")
    if backup_id is not None:
        recs = [r for r in chain if r.manifest_body.backup_id == backup_id]
        if not recs:
            raise UsageError(f"no ingest run with backup_id {backup_id!r} in {lake.uri} (see kbak list)")
        described = [describe_version(r) for r in recs]
        checksums: dict[str, str] = {}
        for d in described:
            checksums.update(d["checksums"])
        return {
            "lake": lake.uri,
            "backup_id": backup_id,
            "versions": described,
            "records": sum(version_summary(r)["records"] for r in recs),
            "bytes": sum(version_summary(r)["bytes"] for r in recs),
            "checksums": checksums,
        }
    by_version = {r.version: r for r in chain}
    if version is None:
        version = chain[-1].version
    if version not in by_version:
        raise UsageError(f"{lake.uri} has no version {version} (versions {chain[0].version}..{chain[-1].version})")
    return {"lake": lake.uri, **describe_version(by_version[version])}


def describe_version(rec: VersionRecord) -> dict:
    body = rec.manifest_body
    m = rec.manifest or {}
    added = [f.to_dict() for f in body.files_added]
    return {
        "version": rec.version,
        "status": rec.status,
        "log_error": rec.log_error,
        "operation": body.operation or None,
        "backup_id": body.backup_id,
        "created_at": body.created_at,
        "created_by": body.created_by,
        "source_cluster": body.source_cluster,
        "files_added": added,
        "files_removed": [f.to_dict() for f in body.files_removed],
        "partitions": body.partitions,
        "gaps": body.gaps,
        "sealed_from_log": body.sealed_from_log,
        "encryption": body.extra.get("encryption"),  # as S3 reported it for the files added (None: local lake)
        "body_sha256": m.get("body_sha256") or rec.body_digest,
        "manifest_sha256": rec.manifest_sha256,
        "previous_manifest_sha256": m.get("previous_manifest_sha256"),
        "delta_log_sha256": m.get("delta_log_sha256"),
        "checkpoint_sha256": m.get("checkpoint_sha256"),
        "checksums": {f["path"]: f"sha256:{f['sha256']}" for f in added if f.get("sha256")},
    }
