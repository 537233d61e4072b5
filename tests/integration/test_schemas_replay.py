"""Replaying wire-format records: byte for byte by default; with ``--schema-registry-target`` the
kept schemas are registered in the target registry and only the 4-byte schema id changes."""

from __future__ import annotations

import struct

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from support.kbak_testing import consume_all, one_line_error, run_json, run_kbak
from support.schema_lake import KINDS, UNKNOWN_ID
from support.schema_registry import FixtureRegistry


def _replay(kafka, schema_lake, topic_name, *extra: str) -> tuple[dict, dict[str, str]]:
    targets = {kind: topic_name(f"restored-{kind}") for kind in KINDS}
    args = ["replay", "--lake", schema_lake.lake, "-b", kafka.bootstrap, "--create-topics"]
    for kind in KINDS:
        args += ["--topic", schema_lake.topics[kind], "--topic-map", f"{schema_lake.topics[kind]}={targets[kind]}"]
    return run_json(*args, *extra), targets


def _archived_values(schema_lake, kind: str) -> list[bytes]:
    values = list(schema_lake.values[kind])
    if kind == "avro":  # the corrupt and the unknown-id records follow the 20 payments
        avro = values[0]
        values += [avro[:-4], b"\x00" + struct.pack(">I", UNKNOWN_ID) + avro[5:]]
    return values


def test_replay_keeps_wire_format_bytes_exactly(kafka, schema_lake, topic_name):
    summary, targets = _replay(kafka, schema_lake, topic_name)
    assert summary["status"] == "complete" and "schema_ids" not in summary
    for kind in KINDS:
        got = [r.value for r in consume_all(kafka.bootstrap, targets[kind], 1)]
        assert got == _archived_values(schema_lake, kind), kind


def test_replay_rewrites_schema_ids_for_the_target_registry(kafka, schema_lake, topic_name):
    with FixtureRegistry(first_id=500) as target:
        target.register("unrelated-value", '"string"')  # the target's ids are its own: 500 is taken
        summary, targets = _replay(kafka, schema_lake, topic_name, "--schema-registry-target", target.url)
        ids = summary["schema_ids"]
        assert ids["mapping"] == {"100": 501, "101": 502, "102": 503}
        assert ids["unmapped"] == {str(UNKNOWN_ID): 1} and ids["rewritten"] == 61  # 3 x 20 + the corrupt one
        for kind, new_id in zip(KINDS, (501, 502, 503), strict=True):
            original = _archived_values(schema_lake, kind)
            got = [r.value for r in consume_all(kafka.bootstrap, targets[kind], 1)]
            assert len(got) == len(original)
            for before, after in zip(original, got, strict=True):
                assert after[5:] == before[5:]  # the payload after the id, byte for byte
                old_id = struct.unpack(">I", before[1:5])[0]
                assert after[:5] == (b"\x00" + struct.pack(">I", new_id) if old_id != UNKNOWN_ID else before[:5])
        # the target registry can decode what was restored
        subject = f"{schema_lake.topics['avro']}-value"
        assert target.state.subjects[subject] == [501]
        deser = AvroDeserializer(SchemaRegistryClient({"url": target.url}))
        first = consume_all(kafka.bootstrap, targets["avro"], 1)[0].value
        assert deser(first, SerializationContext(targets["avro"], MessageField.VALUE)) == {
            **schema_lake.payments[0],
            "memo": None,
        }


def test_target_registry_down_fails_before_producing(kafka, schema_lake, topic_name):
    target = FixtureRegistry().start()
    url = target.url
    target.stop()
    dest = topic_name("restored-none")
    proc = run_kbak(
        "replay",
        "--lake",
        schema_lake.lake,
        "-b",
        kafka.bootstrap,
        "--topic",
        schema_lake.topics["avro"],
        "--topic-map",
        f"{schema_lake.topics['avro']}={dest}",
        "--create-topics",
        "--schema-registry-target",
        url,
    )
    assert one_line_error(proc).startswith("kbak: error: target schema registry")
    from confluent_kafka.admin import AdminClient

    assert dest not in AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=10).topics


def test_rewriting_needs_kept_schemas(kafka, schema_lake, topic_name):
    with FixtureRegistry() as target:
        proc = run_kbak(
            "replay",
            "--lake",
            schema_lake.bare,
            "-b",
            kafka.bootstrap,
            "--topic",
            schema_lake.topics["avro"],
            "--topic-map",
            f"{schema_lake.topics['avro']}={topic_name('x')}",
            "--schema-registry-target",
            target.url,
        )
    assert "keeps no schemas" in one_line_error(proc)


def test_replay_where_can_select_by_a_decoded_field(kafka, schema_lake, topic_name):
    dest = topic_name("restored-where")
    summary = run_json(
        "replay", "--lake", schema_lake.lake, "-b", kafka.bootstrap, "--topic", schema_lake.topics["protobuf"],
        "--topic-map", f"{schema_lake.topics['protobuf']}={dest}", "--create-topics",
        "--where", "field(value_bytes, 'customer_id') = 'customer-0042'",  # in --where, value is text
    )  # fmt: skip
    assert summary["records"] == 2
    got = [r.value for r in consume_all(kafka.bootstrap, dest, 1)]
    assert got == [schema_lake.values["protobuf"][7], schema_lake.values["protobuf"][13]]
