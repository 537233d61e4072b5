"""``kbak schemas``: listing kept schemas with their use, and keeping them from an archived
``_schemas`` topic (the registry's own topic, archived from the real broker like any topic)."""

from __future__ import annotations

import json
import shutil

from support.kbak_testing import one_line_error, produce, run_json, run_kbak
from support.schema_lake import CUSTOMER, UNKNOWN_ID
from support.wire_records import PAYMENT_AVRO, payment_proto_class

from pipeline.dev.sample import create_topics


def test_list_shows_kept_schemas_with_first_and_last_use(schema_lake):
    rows = run_json("schemas", "--lake", schema_lake.lake)
    by_id = {r["id"]: r for r in rows}
    assert sorted(by_id) == [100, 101, 102, UNKNOWN_ID]
    assert (by_id[101]["type"], by_id[101]["subject"], by_id[101]["version"]) == (
        "PROTOBUF",
        f"{schema_lake.topics['protobuf']}-value",
        1,
    )
    assert by_id[100]["records"] == 21 and by_id[100]["topics"] == [schema_lake.topics["avro"]]  # 20 + corrupt
    assert by_id[100]["first_use"] == "2024-07-01T00:00:00+00:00"
    assert by_id[100]["last_use"] == "2024-07-01T19:00:00+00:00"
    assert by_id[UNKNOWN_ID]["kept"] is False and by_id[UNKNOWN_ID]["records"] == 1
    text = run_kbak("schemas", "--lake", schema_lake.lake, check=True).stdout
    assert "NOT KEPT" in text and "AVRO" in text


def test_import_from_archived_schemas_topic_makes_an_old_archive_decodable(schema_lake, tmp_path):
    lake = str(tmp_path / "bare")
    shutil.copytree(schema_lake.bare, lake)
    out = run_json("schemas", "import", "--from-archive", "--topic", schema_lake.schemas_topic, "--lake", lake)
    assert out["kept"] == [100, 101, 102] and out["invalid"] == [] and out["version"] is not None
    rows = json.loads(
        run_kbak(
            "query",
            "customer_activity",
            "--lake",
            lake,
            "--param",
            f"customer={CUSTOMER}",
            "--param",
            "start=2024-07-01",
            "--param",
            "end=2024-10-01",
            "--format",
            "json",
            check=True,
        ).stdout
    )
    assert {r["topic"] for r in rows} == set(schema_lake.topics.values())
    manifest = json.loads((tmp_path / "bare" / "_kbak" / "custody" / f"{out['version']:020d}.json").read_text())
    assert manifest["body"]["operation"] == "schemas-import"
    assert sorted(e["id"] for e in manifest["body"]["schemas"]) == [100, 101, 102]
    assert "VALID" in run_kbak("validate", "--lake", lake, check=True).stdout
    again = run_json("schemas", "import", "--from-archive", "--topic", schema_lake.schemas_topic, "--lake", lake)
    assert again["kept"] == [] and again["already_kept"] == [100, 101, 102] and again["version"] is None


def test_invalid_schemas_records_are_reported_not_fatal(kafka, topic_name, tmp_path):
    topic = topic_name("sregistry-bad")
    create_topics(kafka.bootstrap, {topic: 1})

    def key(subject: str, version: int, keytype: str = "SCHEMA") -> bytes:
        return json.dumps({"keytype": keytype, "subject": subject, "version": version, "magic": 1}).encode()

    good = {"subject": "p-value", "version": 1, "id": 5, "schema": PAYMENT_AVRO, "deleted": False}
    source = (
        'syntax = "proto3";\npackage kbak.test;\n\n'
        "message Payment {\n  string customer_id = 1;\n  int64 amount_cents = 2;\n  string currency = 3;\n}\n"
    )
    proto = {"subject": "q-value", "version": 1, "id": 7, "schemaType": "PROTOBUF", "schema": source}
    produce(
        kafka.bootstrap,
        [
            {"topic": topic, "key": key("p-value", 1), "value": json.dumps(good).encode()},
            {"topic": topic, "key": key("p-value", 2), "value": b"{not json"},
            {"topic": topic, "key": key("p-value", 3), "value": json.dumps({"subject": "p-value", "id": 6}).encode()},
            {"topic": topic, "key": key("x", 0, "NOOP"), "value": b"{}"},
            {"topic": topic, "key": key("p-value", 1), "value": None},  # tombstone: a hard delete
            {"topic": topic, "key": b"\xff", "value": b"x"},
            # Protobuf as Confluent's registry stores it in _schemas: .proto source, not a descriptor
            {"topic": topic, "key": key("q-value", 1), "value": json.dumps(proto).encode()},
        ],
    )
    data_topic = topic_name("sproto-src")
    create_topics(kafka.bootstrap, {data_topic: 1})
    msg = payment_proto_class()(customer_id="customer-0042", amount_cents=7, currency="EUR")
    produce(kafka.bootstrap, [{"topic": data_topic, "value": b"\x00\x00\x00\x00\x07\x00" + msg.SerializeToString()}])
    lake = str(tmp_path / "lake")
    run_json("ingest", "-b", kafka.bootstrap, "--topics", f"{topic}|{data_topic}", "--lake", lake, "--once")
    out = run_json("schemas", "import", "--from-archive", "--topic", topic, "--lake", lake)
    assert out["kept"] == [5, 7] and out["skipped"] == 2
    decoded = json.loads(
        run_kbak(
            "query",
            "--lake",
            lake,
            "--sql",
            f"SELECT decoded(value) AS d FROM records WHERE topic = '{data_topic}'",
            "--format",
            "json",
            check=True,
        ).stdout
    )
    assert json.loads(decoded[0]["d"]) == {"customer_id": "customer-0042", "amount_cents": "7", "currency": "EUR"}
    assert [(b["offset"], b["reason"]) for b in out["invalid"]] == [
        (1, "value is not JSON"),
        (2, "value lacks id, subject, version or schema"),
        (5, "key is not JSON"),
    ]


def test_import_bad_input(schema_lake, tmp_path):
    assert "--from-archive" in one_line_error(run_kbak("schemas", "import", "--lake", schema_lake.bare))
    err = one_line_error(run_kbak("schemas", "import", "--from-archive", "--topic", "nope", "--lake", schema_lake.bare))
    assert "no records of topic 'nope'" in err
    assert "no Delta table" in one_line_error(run_kbak("schemas", "--lake", str(tmp_path / "empty")))
