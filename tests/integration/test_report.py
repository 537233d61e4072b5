"""``kbak report`` on a local lake built by real ingest runs; gap finding as a pure function."""

from __future__ import annotations

import base64
import json
import re

import pyarrow as pa
import pytest
from confluent_kafka import Producer
from support.custody_lakes import ingest
from support.kbak_testing import produce, run_kbak

from pipeline.core.errors import KbakError
from pipeline.custody.report import day_ranges, parse_period
from pipeline.custody.scan import Keys, duplicates, find_gaps
from pipeline.dev.sample import create_topics

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def built(two_run_lake):
    r = two_run_lake
    return r.lake, r.topic, r.first, r.second


def report(lake, *args: str, code: int = 0):
    proc = run_kbak("report", "--lake", str(lake), *args)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    return proc


def test_json_report_counts_records_bytes_days_and_custody(built):
    lake, topic, first, second = built
    r = json.loads(report(lake, "--period", "2024-11", "--format", "json").stdout)
    (t,) = r["topics"]
    assert t["topic"] == topic and t["records"] == 90
    assert t["bytes"] == first["bytes_written"] + second["bytes_written"]
    per_day = {d: n for d, n in t["records_per_day"].items() if n}
    assert per_day == {"2024-11-01": 24, "2024-11-02": 24, "2024-11-03": 12, "2024-11-05": 30}
    assert t["days_without_data"] == ["2024-11-04"] + [f"2024-11-{d:02d}" for d in range(6, 31)]
    assert t["offset_gaps"] == []
    assert r["validation"]["valid"] and r["validation"]["errors"] == []
    listing = json.loads(run_kbak("list", "--lake", str(lake), "--format", "json").stdout)
    assert r["custody_head"] == listing["head"] and r["custody_head"]["version"] == 2
    assert [b["backup_id"] for b in r["backups"]] == [first["backup_id"], second["backup_id"]]
    assert r["holds"]["in_force"] is False and "needs S3" in r["holds"]["note"]

    before = json.loads(report(lake, "--period", "2024-10", "--format", "json").stdout)
    assert before["topics"] == [] and before["backups"] == []
    after = json.loads(report(lake, "--period", "2024-12", "--format", "json").stdout)
    (quiet,) = after["topics"]  # archived before, silent in December: every day is a day without data
    assert quiet["records"] == 0 and len(quiet["days_without_data"]) == 31 and after["backups"] == []


def test_markdown_links_the_chart_and_html_embeds_it(built, tmp_path):
    lake, topic, _first, _second = built
    out = tmp_path / "monthly.md"
    report(lake, "--period", "2024-11", "--output", str(out))
    md = out.read_text()
    assert "![Records per day per topic](monthly-2024-11.png)" in md
    assert (tmp_path / "monthly-2024-11.png").read_bytes().startswith(PNG)
    assert f"| {topic} | 90 |" in md and "2024-11-04, 2024-11-06..2024-11-30" in md
    assert "valid, shallow" in md

    page = report(lake, "--period", "2024-11", "--format", "html", "--deep").stdout
    img = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert img and base64.b64decode(img.group(1)).startswith(PNG)
    assert "valid, deep" in page and topic in page


@pytest.mark.parametrize(("period", "message"), [("2024-13", "use a month as YYYY-MM"), ("", "use a month")])
def test_bad_period(built, period, message):
    proc = report(built[0], "--period", period, code=2)
    assert message in proc.stderr and proc.stdout == ""


def test_transaction_markers_show_as_unexplained_gaps(kafka, tmp_path, topic_name):
    """Commit markers take offsets: the archive has holes ingest did not record, and says so."""
    topic = topic_name("txn")
    create_topics(kafka.bootstrap, {topic: 1})
    p = Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": f"tx-{topic}"})
    p.init_transactions(10)
    for _ in range(2):
        p.begin_transaction()
        for i in range(3):
            p.produce(topic, value=b"x%d" % i, partition=0, timestamp=1_730_419_200_000 + i)
        p.commit_transaction(10)
    lake = tmp_path / "lake"
    assert ingest(kafka, topic, str(lake))["records"] == 6

    v = json.loads(run_kbak("validate", "--lake", str(lake), "--deep", "--format", "json").stdout)
    assert v["valid"]  # gaps are listed, not failures
    gaps = [(g["first_missing"], g["last_missing"], g["recorded"]) for g in v["gaps"]]
    assert gaps and all(not rec for *_x, rec in gaps)
    assert {w["check"] for w in v["warnings"]} == {"offset-gap"}
    r = json.loads(report(lake, "--period", "2024-11", "--format", "json").stdout)
    assert [(g["first_missing"], g["last_missing"]) for g in r["topics"][0]["offset_gaps"]] == [
        (a, b) for a, b, _ in gaps
    ]


def test_find_gaps_tells_recorded_from_unexplained():
    keys = Keys.build([("t", "a", pa.table({"partition": [0] * 3, "offset": [20, 10, 21]})),
                       ("t", "b", pa.table({"partition": [0] * 2, "offset": [15, 11]}))])  # fmt: skip
    gone = "deleted_before_archive"
    recorded = [{"topic": "t", "partition": 0, "first_missing": 0, "last_missing": 9, "reason": gone}]
    gaps = find_gaps(keys, recorded)
    assert [(g["first_missing"], g["last_missing"], g["recorded"], g["reason"]) for g in gaps] == [
        (0, 9, True, gone),
        (12, 14, False, "unexplained"),
        (16, 19, False, "unexplained"),
    ]
    partly = [
        {"topic": "t", "partition": 0, "first_missing": 12, "last_missing": 13, "reason": "deleted_before_archive"}
    ]
    assert [g["recorded"] for g in find_gaps(keys, partly)] == [False, False, False]
    assert [(g["first_missing"], g["last_missing"]) for g in find_gaps(keys, [], leading=False)] == [(12, 14), (16, 19)]
    assert duplicates(keys) == []
    twice = Keys.build([("t", "a", pa.table({"partition": [0, 1], "offset": [7, 7]})),
                        ("t", "b", pa.table({"partition": [1, 1], "offset": [7, 8]}))])  # fmt: skip
    assert duplicates(twice) == [{"topic": "t", "partition": 1, "offset": 7, "files": ["a", "b"]}]


def test_period_and_day_ranges():
    assert [d.isoformat() for d in parse_period("2024-12")] == ["2024-12-01", "2025-01-01"]
    with pytest.raises(KbakError):
        parse_period("2024-1")
    assert day_ranges(["2024-11-03", "2024-11-01", "2024-11-02", "2024-11-09"]) == "2024-11-01..2024-11-03, 2024-11-09"
    assert day_ranges([]) == "none"


def test_records_filed_under_far_dates_leave_no_false_gaps(kafka, tmp_path, topic_name):
    """Offsets 3 and 4 carry timestamps in 1970 and 2100: present, filed outside the period, not gaps."""
    topic = topic_name("fardates")
    create_topics(kafka.bootstrap, {topic: 1})
    nov = 1_730_419_200_000
    far = {3: 1_000, 4: 4_102_444_800_000}  # 1970-01-01, 2100-01-01
    produce(
        kafka.bootstrap,
        [
            {"topic": topic, "partition": 0, "value": b"v%d" % i, "timestamp": far.get(i, nov + i * 60_000)}
            for i in range(8)
        ],
    )
    lake = tmp_path / "lake"
    ingest(kafka, topic, str(lake))
    r = json.loads(report(lake, "--period", "2024-11", "--format", "json").stdout)
    assert r["topics"][0]["offset_gaps"] == []
    v = json.loads(run_kbak("validate", "--lake", str(lake), "--deep", "--format", "json").stdout)
    assert v["gaps"] == []


def test_output_into_a_missing_directory_is_created_before_any_work(built, tmp_path):
    lake, _topic, _first, _second = built
    out = tmp_path / "reports" / "2024-11.md"
    proc = report(lake, "--period", "2024-11", "--output", str(out))
    assert out.exists() and (tmp_path / "reports" / "2024-11-2024-11.png").read_bytes().startswith(PNG)
    assert proc.stderr.strip() == f"wrote {out}"
    q = tmp_path / "exports" / "deep" / "n.csv"
    proc = run_kbak(
        "query", "--lake", str(lake), "--sql", "select count(*) as n from records", "-f", "csv", "-o", str(q)
    )
    assert proc.returncode == 0 and q.read_text().splitlines() == ["n", "90"], proc.stderr


def test_output_that_cannot_be_created_is_refused_in_one_line(built, tmp_path):
    lake, _topic, _first, _second = built
    (tmp_path / "afile").write_text("x")
    for args in (("report", "--period", "2024-11"), ("query", "--sql", "select 1")):
        proc = run_kbak(*args, "--lake", str(lake), "--output", str(tmp_path / "afile" / "x.md"))
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"kbak: error: --output {tmp_path / 'afile' / 'x.md'}: cannot create directory")
