"""Consumer group offsets: snapshot them from the source into the lake, read them back for a replay.

A snapshot is one JSON file under ``_kbak/groups/`` (outside the Delta table, so it never mixes
with records): the committed offset of every group on the archived topics, the time it was read,
the source cluster and the ingest run's backup id. Committed offsets are Kafka's "next offset to
read", so a restored group resumes at the first record it had not consumed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException
from confluent_kafka.admin import AdminClient

from pipeline.core.errors import KbakError
from pipeline.core.storage import Lake
from pipeline.core.timefmt import iso_ms

GROUPS_DIR = "_kbak/groups"
TIMEOUT_S = 30.0


def snapshot_groups(
    lake: Lake, conf: dict, topics: list[str], cluster: str, backup_id: str, skip: frozenset[str] = frozenset()
) -> dict:
    """Read the source's committed group offsets for ``topics`` and store them in the lake.

    ``skip`` names groups to leave out: ingest passes its own, whose offsets only serve lag monitoring.
    """
    wanted = set(topics)
    admin = AdminClient(conf)
    try:
        listing = admin.list_consumer_groups(request_timeout=TIMEOUT_S).result(TIMEOUT_S)
        groups: dict[str, dict[str, dict[str, int]]] = {}
        for g in sorted(listing.valid, key=lambda g: g.group_id):
            if g.group_id in skip:
                continue
            futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g.group_id)])
            result = next(iter(futures.values())).result(TIMEOUT_S)
            for tp in result.topic_partitions or []:
                if tp.topic in wanted and tp.offset >= 0 and tp.error is None:
                    groups.setdefault(g.group_id, {}).setdefault(tp.topic, {})[str(tp.partition)] = tp.offset
    except KafkaException as exc:
        detail = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        raise KbakError(f"cannot read consumer group offsets from {conf.get('bootstrap.servers')}: {detail}") from None
    read_at = datetime.now(UTC)
    snapshot = {
        "read_at": iso_ms(int(read_at.timestamp() * 1000)),
        "source_cluster": cluster,
        "backup_id": backup_id,
        "topics": sorted(wanted),
        "groups": groups,
    }
    name = f"{GROUPS_DIR}/{read_at.strftime('%Y%m%dT%H%M%S%fZ')}-{backup_id}.json"
    lake.write_bytes(name, json.dumps(snapshot, indent=2, sort_keys=True).encode())
    return snapshot


def list_snapshots(lake: Lake) -> list[dict]:
    """Every stored snapshot, oldest first (file names sort by read time)."""
    out = []
    for rel in lake.list_files(GROUPS_DIR):
        if rel.endswith(".json"):
            snap = json.loads(lake.read_bytes(rel))
            snap["path"] = rel
            out.append(snap)
    return out


def group_offsets(lake: Lake, groups: list[str], backup_id: str | None = None) -> tuple[dict, dict]:
    """Committed offsets ``{group: {(topic, partition): offset}}`` from the latest snapshot holding
    each group (or the snapshot of ``backup_id``), plus which snapshot each came from."""
    snaps = list_snapshots(lake)
    if backup_id is not None:
        snaps = [s for s in snaps if s.get("backup_id") == backup_id]
        if not snaps:
            raise KbakError(f"the lake at {lake.uri} holds no consumer group snapshot for backup id {backup_id!r}")
    offsets: dict[str, dict[tuple[str, int], int]] = {}
    sources: dict[str, dict] = {}
    for group in groups:
        holding = [s for s in snaps if group in s.get("groups", {})]
        if not holding:
            known = sorted({g for s in snaps for g in s.get("groups", {})})
            raise KbakError(
                f"consumer group {group!r} is not in any group snapshot in {lake.uri} "
                f"(snapshotted groups: {', '.join(known) or 'none'}; ingest with --snapshot-groups records them)"
            )
        snap = holding[-1]
        offsets[group] = {
            (topic, int(p)): int(off) for topic, parts in snap["groups"][group].items() for p, off in parts.items()
        }
        sources[group] = {"read_at": snap["read_at"], "backup_id": snap.get("backup_id"), "path": snap["path"]}
    return offsets, sources
