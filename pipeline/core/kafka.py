"""Talking to a Kafka cluster: client settings, reachability, topic selection by pattern."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata

from pipeline.core.errors import KbakError
from pipeline.core.secrets import read_secret_files, redact

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


# ``--once`` ends at each partition's EOF, which a fetch at the end reports only after the broker held it
# ``fetch.wait.max.ms`` (librdkafka's default 500 ms). Continuous ingest keeps the default: it is caught
# up most of the time, and shorter waits would only poll the broker more often.
ONCE_CONSUMER = {"fetch.wait.max.ms": 20}


def with_logger(conf: dict) -> dict:
    """Client settings with librdkafka's log routed to Python logging."""
    return {**conf, "logger": KAFKA_LOG}


def client_config(bootstrap_servers: str, extra: dict[str, str] | None = None) -> dict:
    """Client settings for a cluster, with librdkafka's log routed through ``KAFKA_LOG``.

    Secret values given as ``@/path`` are read from that file (see ``pipeline.core.secrets``).
    """
    if not bootstrap_servers:
        raise KbakError("--bootstrap-servers is required")
    return with_logger({"bootstrap.servers": bootstrap_servers, **read_secret_files(extra or {})})


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
    """Cluster metadata, or one line naming the cause and the broker, within ``timeout`` seconds.

    librdkafka retries a failed TLS handshake or SASL authentication forever; here the first
    such error (seen through ``error_cb``) ends the wait at once, so a misconfigured client fails
    fast and before anything is written. An unreachable cluster is reported when ``timeout`` ends.
    """
    errors: list[KafkaError] = []
    try:
        admin = AdminClient(
            with_logger(
                {
                    **conf,
                    "socket.connection.setup.timeout.ms": str(max(int(timeout * 1000), 1000)),
                    "error_cb": errors.append,
                }
            )
        )
    except KafkaException as exc:
        raise KbakError(redact(f"bad Kafka client setting: {exc.args[0].str() if exc.args else exc}")) from None
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            return admin.list_topics(timeout=max(min(0.25, deadline - time.monotonic()), 0.05))
        except KafkaException as exc:
            last = exc.args[0].str() if exc.args else str(exc)
        admin.poll(0)  # serves error_cb
        failure = connection_failure(errors)
        if failure:
            raise KbakError(redact(failure)) from None
        if time.monotonic() >= deadline:
            transport = [e.str() for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN]
            detail = _strip_broker(transport[-1])[1] if transport else last
            raise KbakError(
                redact(f"cannot reach Kafka at {conf.get('bootstrap.servers')} within {timeout:g}s: {detail}")
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


_BROKER = re.compile(r"^(?:[a-z_]+://)?(?P<broker>[^/\s]+)/(?:\S+): (?P<rest>.*?)(?: \(after \d+ms in state \w+\))?$")


def _strip_broker(message: str) -> tuple[str, str]:
    """``ssl://host:9093/bootstrap: reason (after 1ms in state X)`` -> (``host:9093``, ``reason``)."""
    m = _BROKER.match(message.strip())
    return (m["broker"], m["rest"]) if m else ("?", message)


# OpenSSL alerts a broker sends when it refuses (or missed) the client's certificate.
_CLIENT_CERT_REFUSED = (
    "alert certificate required",
    "alert bad certificate",
    "alert unknown ca",
    "alert certificate unknown",
    "alert certificate expired",
)


def connection_failure(errors: list[KafkaError]) -> str | None:
    """The one-line cause when librdkafka reported a TLS or authentication failure, else None.

    A TLS failure is reported as ``_SSL`` during the handshake, or (TLS 1.3: a client certificate
    the broker refuses is only seen afterwards) as a transport error carrying an OpenSSL reason.
    """
    for err in errors:
        code, text = err.code(), err.str()
        broker, reason = _strip_broker(text)
        if code == KafkaError._SSL or (code == KafkaError._TRANSPORT and "SSL routines" in text):
            host = broker.rsplit(":", 1)[0]
            hint = "check ssl.ca.location, that the broker's certificate names " + host
            if any(m in reason for m in _CLIENT_CERT_REFUSED):
                hint = "the broker refused the client certificate: check ssl.certificate.location and ssl.key.location"
            return f"TLS handshake with Kafka broker {broker} failed: {reason} ({hint})"
        if code == KafkaError._AUTHENTICATION:
            return f"authentication to Kafka broker {broker} failed: {reason}"
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
