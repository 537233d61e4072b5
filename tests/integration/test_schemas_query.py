"""Schema registry payloads archived with their schemas, then read with the registry gone:
``kbak ingest --schema-registry`` keeps the schemas in the lake and its custody chain, and the
named queries, ``decoded``/``field`` and ``undecodable`` work from the kept schemas alone."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support.kbak_testing import run_kbak
from support.schema_lake import CUSTOMER, UNKNOWN_ID

from pipeline.core.storage import Lake
from pipeline.schemas.store import SchemaStore, path_of, sha256

WINDOW = ("--param", "start=2024-07-01", "--param", "end=2024-10-01")


def _query(lake: str, *args: str) -> list[dict]:
    proc = run_kbak("query", "--lake", lake, *args, "--format", "json", check=True)
    return json.loads(proc.stdout)


def test_registry_is_gone(schema_lake):
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{schema_lake.registry.url}/subjects", timeout=2)


def test_ingest_keeps_each_schema_once_in_the_custody_manifest(schema_lake):
    summary = schema_lake.summary
    assert summary["schemas"] == {"kept": [100, 101, 102], "unknown": {str(UNKNOWN_ID): 1}, "unkept": {}}
    lake = Lake.at(schema_lake.lake)
    store = SchemaStore(lake)
    kept = store.load_all()
    assert {k: (v.schema_type, v.subject, v.version) for k, v in kept.items()} == {
        100: ("AVRO", f"{schema_lake.topics['avro']}-value", 1),
        101: ("PROTOBUF", f"{schema_lake.topics['protobuf']}-value", 1),
        102: ("JSON", f"{schema_lake.topics['json']}-value", 1),
    }
    listed = []
    for path in lake.list_files("_kbak/custody"):
        if path.count("/") == 2 and path.endswith(".json"):
            listed += json.loads(lake.read_bytes(path))["body"].get("schemas", [])
    assert sorted(e["id"] for e in listed) == [100, 101, 102]  # each once, in the commit that needed it
    for entry in listed:
        assert entry["path"] == path_of(entry["id"])
        assert entry["sha256"] == sha256(lake.read_bytes(entry["path"]))
    assert "VALID" in run_kbak("validate", "--lake", schema_lake.lake, check=True).stdout


@pytest.mark.parametrize("query", ["customer_activity", "legal_hold_export"])
def test_named_queries_find_the_customer_in_every_format(schema_lake, query):
    param = "customer" if query == "customer_activity" else "custodians"
    rows = _query(schema_lake.lake, query, "--param", f"{param}={CUSTOMER}", *WINDOW)
    found = sorted((r["topic"], r["offset"]) for r in rows)
    assert found == sorted((t, o) for t in schema_lake.topics.values() for o in (7, 13))


def test_customer_activity_decode_shows_the_payload_as_json(schema_lake):
    rows = _query(schema_lake.lake, "customer_activity", "--decode", "--param", f"customer={CUSTOMER}", *WINDOW)
    want = schema_lake.payments[7]
    by_topic = {r["topic"]: json.loads(r["value"]) for r in rows if r["offset"] == 7}
    assert by_topic[schema_lake.topics["avro"]] == {**want, "memo": None}
    assert by_topic[schema_lake.topics["protobuf"]] == {**want, "amount_cents": str(want["amount_cents"])}
    assert by_topic[schema_lake.topics["json"]] == want
    assert by_topic[schema_lake.topics["plain"]] == want
    # without --decode the value column stays the bytes as text
    raw = _query(schema_lake.lake, "customer_activity", "--param", f"customer={CUSTOMER}", *WINDOW)
    avro = next(r for r in raw if r["topic"] == schema_lake.topics["avro"])
    assert avro["value"].startswith("\\x00\\x00\\x00\\x00d")


def test_visible_to_user_finds_the_customer_in_every_format(schema_lake):
    rows = _query(
        schema_lake.lake,
        "visible_to_user",
        "--param",
        f"user={CUSTOMER}",
        "--param",
        "day=2024-07-01",
        "--param",
        "topics=",
        "--param",
        "field=customer_id",
    )
    assert sorted((r["topic"], r["offset"]) for r in rows) == sorted(
        (t, o) for t in schema_lake.topics.values() for o in (7, 13)
    )


def test_legal_hold_export_puts_the_decoded_value_next_to_the_exact_bytes(schema_lake, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "hold.parquet"
    run_kbak(
        "query",
        "legal_hold_export",
        "--lake",
        schema_lake.lake,
        "--param",
        f"custodians={CUSTOMER}",
        *WINDOW,
        "--param",
        "terms=eur",
        "--format",
        "parquet",
        "--output",
        str(out),
        check=True,
    )
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 8
    for r in rows:
        kind = next(k for k, t in schema_lake.topics.items() if t == r["topic"])
        assert r["value"] == schema_lake.values[kind][r["offset"]]  # the archived bytes, exactly
        assert json.loads(r["value_decoded"])["customer_id"] == CUSTOMER


def test_decoded_and_field_macros(schema_lake):
    rows = _query(
        schema_lake.lake,
        "--sql",
        'SELECT topic, "offset", schema_id(value) AS sid, decoded(value) AS d, '
        "field(value, 'amount_cents') AS amount "
        'FROM records ORDER BY topic, "offset"',
    )
    by = {(r["topic"], r["offset"]): r for r in rows}
    avro, proto = schema_lake.topics["avro"], schema_lake.topics["protobuf"]
    assert by[(avro, 3)]["sid"] == 100 and by[(avro, 3)]["amount"] == "103"
    assert by[(proto, 3)]["sid"] == 101 and by[(proto, 3)]["amount"] == "103"
    assert by[(schema_lake.topics["json"], 3)]["sid"] == 102
    assert (
        by[(schema_lake.topics["plain"], 3)]["sid"] is None and by[(schema_lake.topics["plain"], 3)]["amount"] == "103"
    )
    # a corrupt payload and an id the registry never issued: NULL, not a failed query
    assert by[(avro, schema_lake.corrupt_offset)]["d"] is None
    assert by[(avro, schema_lake.unknown_offset)]["d"] is None
    assert by[(avro, schema_lake.unknown_offset)]["sid"] == UNKNOWN_ID


def test_undecodable_lists_unknown_ids_and_corrupt_payloads(schema_lake):
    rows = _query(schema_lake.lake, "undecodable")
    got = [(r["topic"], r["offset"], r["part"], r["schema_id"], r["reason"]) for r in rows]
    avro = schema_lake.topics["avro"]
    assert got == [
        (avro, schema_lake.corrupt_offset, "value", 100, "payload does not decode with schema 100"),
        (avro, schema_lake.unknown_offset, "value", UNKNOWN_ID, f"schema {UNKNOWN_ID} is not kept"),
    ]


def test_archive_without_schemas_finds_nothing_in_binary_formats(schema_lake):
    """Without kept schemas the bytes are there but do not decode: undecodable says so."""
    rows = _query(schema_lake.bare, "customer_activity", "--param", f"customer={CUSTOMER}", *WINDOW)
    assert {r["topic"] for r in rows} == {schema_lake.topics["plain"]}
    reasons = {r["reason"] for r in _query(schema_lake.bare, "undecodable")}
    assert reasons >= {f"schema {i} is not kept" for i in (100, 101, 102)}


def test_notebook_finds_the_customer_in_every_format(schema_lake, tmp_path):
    import papermill
    import pyarrow.parquet as pq

    notebook = Path(__file__).resolve().parents[2] / "notebooks" / "legal_discovery.ipynb"
    executed = tmp_path / "run.ipynb"
    papermill.execute_notebook(
        str(notebook),
        str(executed),
        parameters={
            "lake_uri": schema_lake.lake,
            "out_dir": str(tmp_path / "evidence"),
            "case_id": "CASE-S",
            "custodians": [CUSTOMER],
            "topics": list(schema_lake.topics.values()),
            "start": "2024-07-01T00:00:00Z",
            "end": "2024-10-01T00:00:00Z",
        },
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    text = "\n".join(
        "".join(o.get("text", "")) for c in json.loads(executed.read_text())["cells"] for o in c.get("outputs", [])
    )
    assert f"{CUSTOMER}: 8 records" in text
    hold = pq.read_table(tmp_path / "evidence" / "CASE-S.parquet").to_pylist()
    assert sorted((r["topic"], r["offset"]) for r in hold) == sorted(
        (t, o) for t in schema_lake.topics.values() for o in (7, 13)
    )
    assert all(json.loads(r["value_decoded"])["customer_id"] == CUSTOMER for r in hold)


def test_named_queries_still_run_in_a_plain_duckdb_client(schema_lake):
    """``--setup-sql`` gives other DuckDB clients the macros; there wire-format payloads stay undecoded."""
    import duckdb

    from pipeline.query.engine import setup_sql

    con = duckdb.connect()
    con.execute(setup_sql(Lake.at(schema_lake.lake)))
    sql = (Path(__file__).resolve().parents[2] / "queries" / "customer_activity.sql").read_text()
    con.execute(f"PREPARE q AS {sql}")
    rows = con.execute(
        f"EXECUTE q(customer := '{CUSTOMER}', start := TIMESTAMPTZ '2024-07-01', \"end\" := TIMESTAMPTZ '2024-10-01', "
        "topics := [], field := 'customer_id')"
    ).fetchall()
    assert {r[0] for r in rows} == {schema_lake.topics["plain"]}
    assert con.execute("SELECT count(*) FROM records WHERE schema_id(value) = 100").fetchone()[0] == 21
