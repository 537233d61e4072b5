"""The named queries, each checked for the exact rows it returns on a lake with known contents.

The lake is built once per module from records produced to the real broker and archived by
``kbak ingest --once`` (see ``query_lake.py``); the queries run through the real ``kbak query``.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from support import query_lake
from support.kbak_testing import run_kbak

from pipeline.core.storage import Lake
from pipeline.query import engine
from pipeline.query.engine import connect
from pipeline.query.named import check_sql_params, load_queries, run_query


@pytest.fixture()
def audit(audit_lake) -> query_lake.AuditLake:
    return audit_lake


def query(lake: query_lake.AuditLake, name: str, *params: str, fmt: str = "jsonl", extra: tuple = ()) -> list:
    args = ["query", name, "--lake", lake.uri, "--format", fmt, *extra]
    for p in params:
        args += ["--param", p]
    out = run_kbak(*args, check=True).stdout
    if fmt == "jsonl":
        return [json.loads(line) for line in out.splitlines() if line.strip()]
    if fmt == "json":
        return json.loads(out)
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(out)))
    return out


def ts(value: str) -> int:
    return round(datetime.fromisoformat(value).timestamp() * 1000)


def text(b: bytes | None) -> str | None:
    """How the queries render bytes as text: UTF-8, else DuckDB's \\xNN escapes (as_text)."""
    if b is None:
        return None
    try:
        return b.decode()
    except UnicodeDecodeError:
        return "".join(chr(c) if 32 <= c < 127 and c != 92 else f"\\x{c:02X}" for c in b)


def brief(rows: list[dict]) -> list[tuple]:
    return [(r["topic"], r["partition"], r["offset"], ts(r["timestamp"]), r["key"], r["value"]) for r in rows]


def expected(lake, topic: str, pos: list[tuple[int, int]]) -> list[tuple]:
    out = []
    for p, o in pos:
        r = lake.at(topic, p, o)
        out.append((topic, p, o, r["timestamp"], text(r["key"]), text(r["value"])))
    return out


def test_customer_activity_exact_rows(audit):
    rows = query(
        audit,
        "customer_activity",
        "customer=customer-1",
        "start=2024-07-01",
        "end=2024-10-01",
        f"topics={audit.pay}",
    )
    # Key match (0/0, 1/1 whose value is not even JSON), JSON-field match (0/3 keyed by someone
    # else, 1/0 with no key), the record of the second ingest (0/5); not 0/4 (before the window),
    # 1/2 (at the exclusive end), 0/2 (customer-10), ordered by time.
    assert brief(rows) == expected(audit, audit.pay, [(0, 0), (0, 3), (1, 0), (0, 5), (1, 1)])
    assert rows[-1]["value"] == "\\xFF\\x00 not json"


def test_customer_activity_as_of_the_first_version_lacks_the_later_record(audit):
    args = ("customer=customer-1", "start=2024-07-01", "end=2024-10-01", f"topics={audit.pay}")
    by_version = query(audit, "customer_activity", *args, extra=("--as-of", str(audit.first_version)))
    assert brief(by_version) == expected(audit, audit.pay, [(0, 0), (0, 3), (1, 0), (1, 1)])

    # As of a time: the commit time of the first ingest's last version still excludes it.
    history = {h["version"]: h["timestamp"] for h in DeltaTable(audit.uri).history()}
    at = datetime.fromtimestamp(history[audit.first_version] / 1000, UTC).isoformat()
    by_time = query(audit, "customer_activity", *args, extra=("--as-of", at))
    assert by_time == by_version


def test_customer_activity_matches_whole_ids_in_every_topic(audit):
    # customer-2 keys 0/1 and 0/3 (whose JSON names customer-1); customer-10 is not customer-1's prefix.
    rows = query(audit, "customer_activity", "customer=customer-2", "start=2024-07-01", "end=2024-10-01")
    assert brief(rows) == expected(audit, audit.pay, [(0, 1), (0, 3)])
    rows = query(audit, "customer_activity", "customer=customer-10", "start=2024-01-01", "end=2025-01-01")
    assert brief(rows) == expected(audit, audit.pay, [(0, 2)])


def test_visible_to_user_exact_rows(audit):
    rows = query(audit, "visible_to_user", "user=user-7", "day=2024-12-01", f"topics={audit.ua}", fmt="json")
    # Keyed by the user at 00:00:00.000, named only in the JSON at 23:59:59.999; not the next day,
    # the previous day, or user-8.
    got = [(r["topic"], r["partition"], r["offset"], ts(r["timestamp"]), r["key"], r["value"]) for r in rows]
    assert got == expected(audit, audit.ua, [(0, 0), (0, 1)])
    assert all(r["header_names"] == [] for r in rows)


def test_legal_hold_export_parquet_keeps_bytes_and_provenance(audit, tmp_path):
    out = tmp_path / "evidence" / "hold.parquet"
    proc = run_kbak(
        "query",
        "legal_hold_export",
        "--lake",
        audit.uri,
        "--param",
        "start=2024-01-01",
        "--param",
        "end=2025-01-01",
        "--param",
        "custodians=customer-1,customer-3",
        "--param",
        f"topics={audit.pay}",
        "--format",
        "parquet",
        "--output",
        str(out),
        check=True,
    )
    got = [
        (
            r["topic"],
            r["partition"],
            r["offset"],
            round(r["timestamp"].timestamp() * 1000),
            r["key"],
            r["value"],
            [(h["key"], h["value"]) for h in r["headers"]],
        )
        for r in pq.read_table(out).to_pylist()
    ]
    # customer-1 by key or JSON (0/3 is keyed customer-2; 1/0 has no key; 1/1 is not JSON), and
    # customer-3's tombstone and empty value: exact bytes, headers in order with duplicates and nulls.
    want = []
    for p, o in [(0, 0), (0, 3), (0, 4), (0, 5), (1, 0), (1, 1), (1, 2), (1, 3), (1, 4)]:
        r = audit.at(audit.pay, p, o)
        want.append((audit.pay, p, o, r["timestamp"], r["key"], r["value"], list(r["headers"])))
    assert got == want
    assert "wrote 9 rows" in proc.stderr
    assert got[7][5] is None and got[8][5] == b""


def test_legal_hold_export_terms_jsonl(audit):
    rows = query(audit, "legal_hold_export", "start=2024-01-01", "end=2025-01-01", "terms=REFUND,nothing-matches")
    assert [(r["topic"], r["partition"], r["offset"], r["value_text"]) for r in rows] == [
        (audit.pay, 0, 1, text(audit.at(audit.pay, 0, 1)["value"])),
        (audit.pay, 0, 3, text(audit.at(audit.pay, 0, 3)["value"])),
    ]
    # Provenance columns come along in the evidence file.
    assert set(rows[0]) >= {"timestamp", "timestamp_type", "headers", "source_cluster", "ingested_at", "key", "value"}
    both = query(
        audit, "legal_hold_export", "start=2024-01-01", "end=2025-01-01", "terms=refund", "custodians=customer-2"
    )
    assert [(r["partition"], r["offset"]) for r in both] == [(0, 1), (0, 3)]
    only_c2_json = query(
        audit,
        "legal_hold_export",
        "start=2024-01-01",
        "end=2025-01-01",
        "terms=refund",
        "custodians=customer-1",
        "field=customer_id",
    )
    assert [(r["partition"], r["offset"]) for r in only_c2_json] == [(0, 3)]


def payload_bytes(r: dict) -> int:
    return len(r["key"] or b"") + len(r["value"] or b"") + sum(len(k.encode()) + len(v or b"") for k, v in r["headers"])


def test_topic_inventory_exact(audit):
    rows = query(audit, "topic_inventory", f"topics={audit.pay},{audit.gap}", fmt="csv")
    want = []
    for topic, partition in sorted([(audit.pay, 0), (audit.pay, 1), (audit.gap, 0)]):
        recs = [r for r in audit.of(topic) if r["partition"] == partition]
        days = {datetime.fromtimestamp(r["timestamp"] / 1000, UTC).date() for r in recs}
        want.append(
            {
                "topic": topic,
                "partition": str(partition),
                "records": str(len(recs)),
                "first_offset": str(min(r["offset"] for r in recs)),
                "last_offset": str(max(r["offset"] for r in recs)),
                "first_timestamp_ms": min(r["timestamp"] for r in recs),
                "last_timestamp_ms": max(r["timestamp"] for r in recs),
                "bytes": str(sum(payload_bytes(r) for r in recs)),
                "days": str(len(days)),
            }
        )
    for r in rows:
        r["first_timestamp_ms"] = ts(r.pop("first_timestamp"))
        r["last_timestamp_ms"] = ts(r.pop("last_timestamp"))
    assert rows == want


def test_offset_gaps_finds_the_transaction_markers(audit):
    rows = query(audit, "offset_gaps")
    # Only the transactional topic has holes: its commit markers at offsets 1 (and 4, after the
    # last record, which no archive can see).
    row = {"topic": audit.gap, "partition": 0, "first_missing": 1, "last_missing": 1, "missing": 1}
    assert rows == [{**row, "reason": "unexplained"}]  # no commit recorded a reason for it
    assert query(audit, "offset_gaps", f"topics={audit.pay}") == []


def test_daily_volume_exact(audit):
    rows = query(audit, "daily_volume", f"topics={audit.ua}", "from_day=2024-12-01", fmt="json")
    per_day: Counter = Counter()
    size: Counter = Counter()
    for r in audit.of(audit.ua):
        day = datetime.fromtimestamp(r["timestamp"] / 1000, UTC).date().isoformat()
        if day >= "2024-12-01":
            per_day[day] += 1
            size[day] += payload_bytes(r)
    assert rows == [{"topic": audit.ua, "day": d, "records": per_day[d], "bytes": size[d]} for d in sorted(per_day)]
    assert [r["day"] for r in rows] == ["2024-12-01", "2024-12-02"]


def test_python_api_runs_the_same_queries(audit):
    con = connect(Lake.at(audit.uri))
    table = run_query(
        con,
        "customer_activity",
        {"customer": "customer-1", "start": "2024-07-01", "end": "2024-10-01", "topics": [audit.pay]},
    ).to_arrow_table()
    assert [(r["partition"], r["offset"]) for r in table.to_pylist()] == [(0, 0), (0, 3), (1, 0), (0, 5), (1, 1)]


def test_every_reader_returns_the_same_rows(audit):
    lake = Lake.at(audit.uri)
    results, columns = [], []
    for reader in ("delta_scan", "parquet", "arrow"):
        con = connect(lake, reader=reader)
        assert engine.table_state(con).reader == reader
        params = {"start": "2024-01-01", "end": "2025-01-01"}
        results.append(run_query(con, "legal_hold_export", params).to_arrow_table())
        columns.append(con.execute("DESCRIBE records").fetchall())
    assert results[0].num_rows == len(audit.records) + 1
    assert results[0].to_pylist() == results[1].to_pylist() == results[2].to_pylist()
    assert columns[0] == columns[1] == columns[2]


def test_the_default_reader_is_parquet_for_few_files_and_delta_scan_for_many(audit, monkeypatch):
    lake = Lake.at(audit.uri)
    assert engine.table_state(connect(lake)).reader == "parquet"  # no delta extension to load
    monkeypatch.setattr(engine, "PARQUET_READER_MAX_FILES", 0)  # as on a table of thousands of files
    assert engine.table_state(connect(lake)).reader == "delta_scan"  # its statistics skip files unopened


def test_every_named_query_declares_exactly_the_parameters_it_uses():
    for q in load_queries().values():
        assert q.description, q.name
        check_sql_params(q.sql, {p.name: "x" for p in q.params})


def test_falls_back_to_the_arrow_reader_when_the_extension_cannot_load(audit, monkeypatch):
    def missing(name):
        raise engine.KbakError(f"the duckdb-extension-{name} wheel is not installed")

    monkeypatch.setattr(engine, "extension_path", missing)
    monkeypatch.setattr(engine, "PARQUET_READER_MAX_FILES", 0)  # so the default is delta_scan
    con = connect(Lake.at(audit.uri))
    assert engine.table_state(con).reader == "arrow"
    assert con.execute("SELECT count(*) FROM records").fetchone()[0] == len(audit.records) + 1
    with pytest.raises(engine.KbakError, match="delta_scan reader is unavailable: the duckdb-extension-delta wheel"):
        connect(Lake.at(audit.uri), reader="delta_scan")


def test_unknown_reader_is_an_error(audit):
    proc = run_kbak("query", "topic_inventory", "--lake", audit.uri, "--reader", "spark")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "kbak: error: unknown SQL reader 'spark': use one of delta_scan, parquet, arrow"
