"""Talking to a Kafka cluster: client settings, reachability, topic selection by pattern."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata

from pipeline.core.errors import KbakError

CONNECT_TIMEOUT_S = 10.0

# librdkafka's own log lines (connection retries and the like) go to this logger instead of
# stderr, so a failure reaches the user as one line from kbak; `KBAK_LOG=debug` shows them.
KAFKA_LOG = logging.getLogger("kbak.librdkafka")

# How ingest consumes (``-X`` settings override these). Replay's producer defaults are
# ``pipeline.replay.produce.PRODUCER_DEFAULTS``.
CONSUMER_DEFAULTS: dict = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "enable.partition.eof": True,
    "isolation.level": "read_committed",
    "auto.offset.reset": "earliest",
    # Prefetch little (bounded RSS) but refill at once: librdkafka's default waits a whole
    # second (fetch.queue.backoff.ms=1000) after the queue filled, which starved the loop.
    "fetch.max.bytes": 32 << 20,
    "max.partition.fetch.bytes": 4 << 20,
    "queued.max.messages.kbytes": 16 << 10,
    "fetch.queue.backoff.ms": 10,
    "socket.connection.setup.timeout.ms": 10000,
    # Short enough that a dead worker's partitions move on quickly (and that group
    # joins on the test broker take seconds, not tens of seconds).
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
}


def with_logger(conf: dict) -> dict:
    """Client settings with librdkafka's log routed to Python logging."""
    return {**conf, "logger": KAFKA_LOG}


def client_config(bootstrap_servers: str, extra: dict[str, str] | None = None) -> dict:
    """Client settings for a cluster, with librdkafka's log routed through ``KAFKA_LOG``."""
    if not bootstrap_servers:
        raise KbakError("--bootstrap-servers is required")
    return with_logger({"bootstrap.servers": bootstrap_servers, **(extra or {})})


def consumer_for(conf: dict, group_id: str, overrides: dict[str, str] | None = None) -> Consumer:
    """An ingest consumer: ``CONSUMER_DEFAULTS``, then ``overrides`` (``-X``); bad settings are one line."""
    try:
        return Consumer({**conf, **CONSUMER_DEFAULTS, "group.id": group_id, **(overrides or {})})
    except KafkaException as exc:
        detail = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        raise KbakError(f"bad Kafka client setting: {detail.removeprefix('Failed to create consumer: ')}") from None
    except (TypeError, ValueError) as exc:
        raise KbakError(f"bad Kafka client setting: {exc}") from None


def parse_settings(pairs: Iterable[str]) -> dict[str, str]:
    """``-X key=value`` librdkafka settings, as kcat takes them."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise KbakError(f"librdkafka setting {pair!r} must be key=value")
        out[key.strip()] = value
    return out


def cluster_metadata(conf: dict[str, str], timeout: float = CONNECT_TIMEOUT_S) -> ClusterMetadata:
    """Cluster metadata, or a one-line error after a bounded wait when the cluster is unreachable."""
    try:
        admin = AdminClient(with_logger({**conf, "socket.connection.setup.timeout.ms": str(int(timeout * 1000))}))
    except KafkaException as exc:
        raise KbakError(f"bad Kafka client setting: {exc.args[0].str() if exc.args else exc}") from None
    # Asked in short steps: librdkafka blocks in C, and a signal must not wait for the whole timeout.
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            return admin.list_topics(timeout=max(min(left, 0.5), 0.01))
        except KafkaException as exc:
            if left > 0.5:
                continue
            detail = exc.args[0].str() if exc.args else str(exc)
            raise KbakError(
                f"cannot reach Kafka at {conf.get('bootstrap.servers')} within {timeout:g}s: {detail}"
            ) from None


def group_members(conf: dict, group_id: str, timeout: float = 5.0) -> list[str] | None:
    """``client_id@host`` of each member of a consumer group, or None when the admin API cannot tell."""
    try:
        admin = AdminClient(with_logger(conf))
        futures = admin.describe_consumer_groups([group_id], request_timeout=timeout)
        desc = futures[group_id].result(timeout)
        return sorted(f"{m.client_id}@{m.host}" for m in desc.members)
    except Exception:  # noqa: BLE001 - best effort: the caller's message stands without the names
        return None


def compile_patterns(patterns: Iterable[str], flag: str) -> list[re.Pattern]:
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as exc:
            raise KbakError(f"{flag} {p!r} is not a valid regular expression: {exc}") from None
    return out


def select_topics(names: Iterable[str], include: list[re.Pattern], exclude: list[re.Pattern]) -> list[str]:
    """Topics whose whole name matches an include pattern and no exclude pattern.

    Patterns match the whole name, as Kafka's own pattern subscriptions do; internal topics
    (``__consumer_offsets`` and friends) are left out unless a pattern names them explicitly.
    """
    out = []
    for name in names:
        if not any(p.fullmatch(name) for p in include):
            continue
        if any(p.fullmatch(name) for p in exclude):
            continue
        if name.startswith("__") and not any(p.pattern == name for p in include):
            continue
        out.append(name)
    return sorted(out)
