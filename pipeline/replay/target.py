"""The target cluster: is it reachable, do the target topics exist with enough partitions, create them."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.core.errors import KbakError
from pipeline.core.kafka import cluster_metadata
from pipeline.replay.options import ReplayOptions


class TargetMismatch(KbakError):
    """The target cannot take the selection as planned (a topic missing, or too few partitions)."""


@dataclass(frozen=True)
class TargetTopic:
    source: str
    name: str
    partitions: int
    created: bool = False


def check_targets(
    conf: dict[str, str],
    options: ReplayOptions,
    needed: dict[str, int],
    source_partitions: dict[str, int],
    create: bool,
) -> dict[str, TargetTopic]:
    """Per source topic, its target; fails (before anything is produced) when a target cannot take it.

    ``needed``: per source topic, the highest selected partition + 1. ``source_partitions``: the
    source topic's partition count, which ``--create-topics`` gives a missing target.
    """
    # The probe stays quiet: an unreachable target is reported once, as a one-line error.
    md = cluster_metadata({"log_level": "0", **conf}, timeout=options.connect_timeout_s)
    out: dict[str, TargetTopic] = {}
    missing: dict[str, int] = {}
    for source, need in sorted(needed.items()):
        name = options.target_topic(source)
        meta = md.topics.get(name)
        if meta is not None and meta.error is None and meta.partitions:
            count = len(meta.partitions)
        elif options.create_topics:
            count = missing[name] = max(source_partitions.get(source, need), missing.get(name, 0))
        else:
            raise TargetMismatch(
                f"target topic {name!r} does not exist on {conf['bootstrap.servers']}; "
                f"create it or pass --create-topics (it would get {source_partitions.get(source, need)} partitions)"
            )
        if options.repartition is None and count < need:
            raise TargetMismatch(
                f"target topic {name!r} has {count} partition(s) but the replay keeps source partitions up to "
                f"{need - 1} of {source!r}; pass --repartition murmur2 or --repartition round-robin"
            )
        out[source] = TargetTopic(source, name, count, name in missing)
    if missing and create:
        _create(conf, missing)
    return out


def _create(conf: dict[str, str], topics: dict[str, int]) -> None:
    admin = AdminClient(conf)
    futures = admin.create_topics([NewTopic(t, n) for t, n in sorted(topics.items())], request_timeout=30)
    for name, fut in futures.items():
        try:
            fut.result(30)
        except KafkaException as exc:
            raise KbakError(f"cannot create target topic {name!r}: {exc.args[0].str()}") from None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the cluster's metadata shows them
        md = admin.list_topics(timeout=10)
        if all(t in md.topics and len(md.topics[t].partitions) == n for t, n in topics.items()):
            return
        time.sleep(0.2)
    raise KbakError(f"created topics {sorted(topics)} did not appear in the target's metadata within 30s")
