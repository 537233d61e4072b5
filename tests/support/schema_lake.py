"""A lake of Confluent wire-format topics for the schema tests, built through ``kbak ingest``.

Three topics carry the same 20 payments as Avro, Protobuf and JSON Schema, a fourth as plain
JSON; the fixture registry also writes every registration to a ``_schemas``-style topic on the
real broker, as Confluent Schema Registry does. ``build`` archives them twice: once with
``--schema-registry`` (the schemas are kept) and once without (only the records and the
registry's topic), then stops the registry for good.
"""

from __future__ import annotations

import json
import struct
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pipeline.dev.sample import create_topics
from support.kbak_testing import produce, run_kbak
from support.schema_registry import FixtureRegistry
from support.wire_records import payment, produce_payments

KINDS = ("avro", "protobuf", "json")
CUSTOMER = "customer-0042"
START = datetime(2024, 7, 1, tzinfo=UTC)
UNKNOWN_ID = 9999


@dataclass
class SchemaLake:
    lake: str  # ingested with --schema-registry
    bare: str  # ingested without: records and the registry's topic only
    topics: dict[str, str]  # kind (avro, protobuf, json, plain) -> topic
    schemas_topic: str
    registry: FixtureRegistry  # stopped once built
    values: dict[str, list[bytes]] = field(default_factory=dict)  # kind -> produced value bytes
    payments: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)  # the --schema-registry ingest's --json summary
    corrupt_offset: int = 0  # in the avro topic: a framed record whose payload is cut short
    unknown_offset: int = 0  # in the avro topic: a framed record with an id the registry never issued


def payments() -> list[dict]:
    out = [payment(i) for i in range(20)]
    out[7]["customer_id"] = CUSTOMER
    out[13]["customer_id"] = CUSTOMER
    return out


def timestamps(n: int) -> list[int]:
    return [int((START + timedelta(hours=i)).timestamp() * 1000) for i in range(n)]


def build(bootstrap: str, base: str) -> SchemaLake:
    suffix = uuid.uuid4().hex[:8]
    topics = {kind: f"s{kind}-{suffix}" for kind in (*KINDS, "plain")}
    schemas_topic = f"sregistry-{suffix}"
    create_topics(bootstrap, {**dict.fromkeys(topics.values(), 1), schemas_topic: 1})
    registry = FixtureRegistry(first_id=100, schemas_topic=schemas_topic, bootstrap=bootstrap).start()
    data = payments()
    ts = timestamps(len(data))
    out = SchemaLake(f"{base}/lake", f"{base}/bare", topics, schemas_topic, registry, payments=data)
    try:
        for kind in KINDS:
            out.values[kind] = produce_payments(bootstrap, topics[kind], kind, registry.url, data, ts)
        plain = [json.dumps(p).encode() for p in data]
        out.values["plain"] = plain
        produce(
            bootstrap, [{"topic": topics["plain"], "value": v, "timestamp": t} for v, t in zip(plain, ts, strict=True)]
        )
        avro = out.values["avro"]
        bad = [avro[0][:-4], b"\x00" + struct.pack(">I", UNKNOWN_ID) + avro[0][5:]]
        produce(bootstrap, [{"topic": topics["avro"], "value": v, "timestamp": ts[-1]} for v in bad])
        out.corrupt_offset, out.unknown_offset = len(data), len(data) + 1
        pattern = f"s.*-{suffix}"
        proc = run_kbak(
            "ingest",
            "-b",
            bootstrap,
            "--topics",
            pattern,
            "--exclude",
            schemas_topic,
            "--lake",
            out.lake,
            "--once",
            "--schema-registry",
            registry.url,
            "--json",
            check=True,
        )
        out.summary = json.loads(proc.stdout)
        run_kbak("ingest", "-b", bootstrap, "--topics", pattern, "--lake", out.bare, "--once", "--json", check=True)
    finally:
        registry.stop()
    return out
