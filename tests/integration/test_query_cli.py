"""``kbak query`` as a command: listing, ad-hoc SQL, output formats, S3 lakes, and bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake
from support.kbak_testing import KBAK, produce, run_json, run_kbak

from pipeline.core.storage import Lake, S3Settings
from pipeline.dev.sample import create_topics
from pipeline.query.engine import setup_sql

RECORDS = 40


def _fill(bootstrap: str, topic: str, lake: str, *extra: str, env: dict | None = None) -> None:
    create_topics(bootstrap, {topic: 2})
    produce(
        bootstrap,
        [
            {
                "topic": topic,
                "partition": i % 2,
                "key": f"customer-{i % 4}".encode(),
                "value": json.dumps({"customer_id": f"customer-{i % 4}", "n": i}).encode(),
                "headers": [("trace-id", f"t{i}".encode())],
                "timestamp": 1_719_792_000_000 + i * 3_600_000,  # hourly from 2024-07-01
            }
            for i in range(RECORDS)
        ],
    )
    run_json("ingest", "-b", bootstrap, "--topics", topic, "--lake", lake, "--once", *extra, env=env)


@pytest.fixture(scope="module")
def lake(kafka, tmp_path_factory):
    import uuid

    topic = f"qcli-{uuid.uuid4().hex[:8]}"
    path = str(tmp_path_factory.mktemp("qcli") / "lake")
    _fill(kafka.bootstrap, topic, path)
    return path, topic


def kbak_query(*args: str, env: dict | None = None):
    return run_kbak("query", *args, env=env)


def fails(proc, *needles: str) -> str:
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert err.startswith("kbak: error: ") and "\n" not in err, err
    for n in needles:
        assert n in err, err
    return err


def test_list_shows_every_query_with_parameters_and_description():
    out = kbak_query("--list").stdout
    for name in (
        "customer_activity",
        "visible_to_user",
        "legal_hold_export",
        "topic_inventory",
        "offset_gaps",
        "daily_volume",
    ):
        assert f"\n{name}\n" in f"\n{out}"
    assert "--param customer VARCHAR  the customer id" in out
    assert "--param topics VARCHAR[] = user-activity" in out
    assert "all transactions for customer X during Q3 2024" in out


def test_sql_binds_parameters_never_pastes_them(lake):
    path, topic = lake
    sql = "SELECT count(*) AS n FROM records WHERE as_text(key) = $who"
    assert json.loads(kbak_query("--sql", sql, "-p", "who=customer-1", "--lake", path, "-f", "json").stdout) == [
        {"n": RECORDS // 4}
    ]
    # An injection attempt is just a key nobody has.
    injected = kbak_query("--sql", sql, "-p", "who=x' OR '1'='1", "--lake", path, "-f", "json")
    assert json.loads(injected.stdout) == [{"n": 0}]


def test_sql_naming_the_recorded_gaps_view_gets_it(lake):
    # kbak query makes kbak_recorded_gaps (it lists every custody manifest) only for SQL that names it.
    path, topic = lake
    sql = "SELECT count(*) AS n FROM Kbak_Recorded_Gaps"
    assert json.loads(kbak_query("--sql", sql, "--lake", path, "-f", "json").stdout) == [{"n": 0}]


def test_macros_from_the_command_line(lake):
    path, topic = lake
    sql = (
        "SELECT as_text(key) AS k, json_field(value, 'n') AS n, header_text(headers, 'trace-id') AS trace, "
        "header_names(headers) AS names, record_bytes(key, value, headers) AS size "
        'FROM records ORDER BY "timestamp" LIMIT 1'
    )
    row = json.loads(kbak_query("--sql", sql, "--lake", path, "-f", "json").stdout)[0]
    value = json.dumps({"customer_id": "customer-0", "n": 0}).encode()
    assert row == {"k": "customer-0", "n": "0", "trace": "t0", "names": ["trace-id"], "size": 10 + len(value) + 8 + 2}


def test_table_format_is_readable_and_says_when_it_is_cut(lake):
    path, topic = lake
    out = kbak_query("daily_volume", "--lake", path).stdout
    assert "topic" in out.splitlines()[1] and f"│ {topic} │ 2024-07-01 │      24 │" in out
    cut = kbak_query("--sql", "SELECT * FROM records", "--lake", path, "--max-rows", "5").stdout
    assert "first 5 rows shown" in cut


def test_csv_and_jsonl_stream_to_an_output_file(lake, tmp_path):
    path, topic = lake
    out = tmp_path / "a.csv"
    proc = kbak_query(
        "--sql", 'SELECT "offset", key FROM records ORDER BY 1, 2', "--lake", path, "-f", "csv", "-o", str(out)
    )
    assert proc.returncode == 0 and proc.stdout == "" and f"wrote {RECORDS} rows" in proc.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == RECORDS and rows[0] == {"offset": "0", "key": "customer-0"}
    jl = tmp_path / "a.jsonl"
    kbak_query("--sql", "SELECT * FROM records", "--lake", path, "-f", "jsonl", "-o", str(jl))
    assert len(jl.read_text().splitlines()) == RECORDS
    pq_out = tmp_path / "a.parquet"
    kbak_query("--sql", "SELECT * FROM records", "--lake", path, "-f", "parquet", "-o", str(pq_out))
    assert pq.read_table(pq_out).num_rows == RECORDS


def _shell(script: str, cwd) -> subprocess.CompletedProcess:
    """Run ``script`` in a real bash, so its redirections (``>>``, ``{ ...; } >``) are the shell's own."""
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120, check=True)


def test_stdout_appends_and_shell_groupings_keep_what_is_already_there(lake, tmp_path):
    """Issue 14.2: ``>> evidence.jsonl`` kept its earlier lines, and a header echoed first survives."""
    path, _ = lake
    sql = 'SELECT "offset", "partition" FROM records ORDER BY 2, 1'
    evidence = tmp_path / "evidence.jsonl"
    evidence.write_text('{"earlier": 1}\n{"earlier": 2}\n')
    q = f"{shlex.quote(KBAK)} query --lake {shlex.quote(path)} --sql {shlex.quote(sql)}"
    _shell(f"{q} --format jsonl >> evidence.jsonl && {q} --format jsonl >> evidence.jsonl", tmp_path)
    lines = [json.loads(line) for line in evidence.read_text().splitlines()]
    assert lines[:2] == [{"earlier": 1}, {"earlier": 2}] and len(lines) == 2 + 2 * RECORDS
    assert lines[2] == {"offset": 0, "partition": 0} and lines[2 : 2 + RECORDS] == lines[2 + RECORDS :]

    _shell(f"{{ echo '# exported by the auditor'; {q} --format csv; echo '# end'; }} > out.csv", tmp_path)
    text = (tmp_path / "out.csv").read_text().splitlines()
    assert text[0] == "# exported by the auditor" and text[1] == "offset,partition" and text[-1] == "# end"
    assert len(text) == 3 + RECORDS

    _shell(f"{{ echo '['; {q} --format json; }} >> out.csv", tmp_path)  # json (array) appended too
    after = (tmp_path / "out.csv").read_text()
    assert after.startswith("\n".join(text) + "\n[\n") and len(json.loads(after[after.index("[\n") + 2 :])) == RECORDS

    _shell(f"{q} --format parquet > a.parquet && {q} --format parquet | cat > b.parquet", tmp_path)
    for name in ("a.parquet", "b.parquet"):
        assert pq.read_table(tmp_path / name).to_pylist() == lines[2 : 2 + RECORDS]


def test_parquet_to_a_terminal_is_refused(lake):
    """Parquet to stdout works redirected (above); on a terminal it would be garbage, so it is refused."""
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [KBAK, "query", "--sql", "SELECT 1", "--lake", lake[0], "-f", "parquet"],
            stdout=follower,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "kbak: error: --format parquet is binary: give --output FILE or redirect stdout to a file"
    )


def test_non_select_statements_work_too(lake):
    path, _ = lake
    described = json.loads(kbak_query("--sql", "DESCRIBE records", "--lake", path, "-f", "json").stdout)
    assert [r["column_name"] for r in described][:4] == ["topic", "partition", "offset", "timestamp"]
    info = json.loads(kbak_query("--sql", "SELECT * FROM kbak_table", "--lake", path, "-f", "json").stdout)
    assert info[0]["reader"] == "parquet" and info[0]["version"] >= 1  # a table of few files


def test_setup_sql_gives_a_plain_duckdb_client_the_same_view_and_macros(lake):
    path, topic = lake
    con = duckdb.connect()
    con.execute(setup_sql(Lake.at(path)))
    assert con.execute("SELECT count(*), max(as_text(key)) FROM records").fetchone() == (RECORDS, "customer-3")
    printed = kbak_query("--setup-sql", "--lake", path).stdout
    assert printed == setup_sql(Lake.at(path))


def test_s3_lake(kafka, s3, bucket, topic_name):
    topic = topic_name("qs3")
    uri = f"s3://{bucket}/lake"
    env = s3.env()
    _fill(kafka.bootstrap, topic, uri, "--s3-endpoint", s3.endpoint, env=env)
    for reader in (None, "delta_scan", "parquet", "arrow"):
        chosen = ("--reader", reader) if reader else ()
        got = kbak_query("topic_inventory", "--lake", uri, "--s3-endpoint", s3.endpoint, *chosen, "-f", "json", env=env)
        assert got.returncode == 0, got.stderr
        rows = json.loads(got.stdout)
        assert [(r["partition"], r["records"]) for r in rows] == [(0, RECORDS // 2), (1, RECORDS // 2)]
    old = kbak_query("--sql", "SELECT count(*) AS n FROM records", "--lake", uri, "--as-of", "0", "-f", "json", env=env)
    assert json.loads(old.stdout) == [{"n": 0}]
    # Setup SQL for an S3 lake leaves credentials as placeholders.
    text = setup_sql(Lake.at(uri, S3Settings(endpoint=s3.endpoint)))
    assert "<AWS_SECRET_ACCESS_KEY>" in text and s3.secret_key not in text.replace("<AWS_SECRET_ACCESS_KEY>", "")


# -- bad input: one line naming the problem, non-zero exit ----------------------------------------


def test_unknown_query_name(lake):
    fails(kbak_query("customer_activty", "--lake", lake[0]), "unknown query 'customer_activty'", "customer_activity")


def test_missing_parameter(lake):
    fails(kbak_query("visible_to_user", "--lake", lake[0], "-p", "user=u"), "needs parameter 'day'")


def test_extra_parameter(lake):
    proc = kbak_query("topic_inventory", "--lake", lake[0], "-p", "topic=x")
    fails(proc, "has no parameter 'topic'", "its parameters: topics")
    fails(kbak_query("--sql", "SELECT 1", "--lake", lake[0], "-p", "x=1"), "--param x is not used by the SQL")
    fails(kbak_query("--sql", "SELECT $a", "--lake", lake[0]), "needs parameter 'a'")


def test_parameter_of_the_wrong_type(lake):
    proc = kbak_query("visible_to_user", "--lake", lake[0], "-p", "user=u", "-p", "day=yesterday")
    fails(proc, "parameter day = 'yesterday' is not a valid DATE")
    fails(kbak_query("topic_inventory", "--lake", lake[0], "-p", "novalue"), "--param 'novalue' is not name=value")


def test_sql_errors(lake):
    fails(kbak_query("--sql", "SELEC 1", "--lake", lake[0]), "SQL error", "syntax error")
    fails(kbak_query("--sql", "SELECT nope FROM records", "--lake", lake[0]), "SQL error", "nope")
    fails(kbak_query("--sql", "SELECT * FROM records", "--lake", lake[0], "-f", "xml"), "unknown format 'xml'")


def test_lake_that_is_not_a_kbak_table(tmp_path):
    fails(kbak_query("topic_inventory", "--lake", str(tmp_path / "empty")), "no kbak archive at")
    other = tmp_path / "other"
    import pyarrow as pa

    write_deltalake(str(other), pa.table({"a": [1]}))
    fails(kbak_query("topic_inventory", "--lake", str(other)), "not a kbak archive")


def test_version_that_does_not_exist(lake):
    fails(kbak_query("topic_inventory", "--lake", lake[0], "--as-of", "999"), "has no version '999': the newest is")
    fails(kbak_query("topic_inventory", "--lake", lake[0], "--as-of", "1999-01-01T00:00:00Z"), "has no version")


def test_as_of_takes_the_same_time_formats_as_from(lake):
    """Issue 14.13: bare dates and space-separated times work for --as-of as they do for --from."""
    path, _ = lake
    sql = "SELECT version, as_of FROM kbak_table"
    log = sorted((Path(path) / "_delta_log").glob("*.json"))[-1]
    newest, lines = int(log.stem), log.read_text().splitlines()
    committed = next(json.loads(x)["commitInfo"]["timestamp"] for x in lines if "commitInfo" in x)
    stamp = datetime.fromtimestamp(committed / 1000 + 1, UTC).strftime("%Y-%m-%d %H:%M:%S")  # with a space
    for as_of in ("2099-01-01", stamp, "2099-01-01T00:00:00Z", "2099-01-01 00:00:00+02:00"):
        proc = kbak_query("--sql", sql, "--lake", path, "--as-of", as_of, "-f", "json")
        assert proc.returncode == 0, (as_of, proc.stderr)
        assert json.loads(proc.stdout) == [{"version": newest, "as_of": as_of}]
    far = kbak_query("--sql", sql, "--lake", path, "--as-of", "2099-01-01", "-f", "json")
    assert far.stderr.startswith(f"kbak: note: --as-of 2099-01-01 is after the newest version ({newest}, committed ")
    assert far.stderr.strip().endswith(f"): reading version {newest}")
    fails(kbak_query("topic_inventory", "--lake", path, "--as-of", "1999-01-01"), "created after that time")
    fails(
        kbak_query("topic_inventory", "--lake", path, "--as-of", "yesterday"),
        "--as-of 'yesterday' is neither epoch milliseconds nor an ISO-8601 time",
    )


def test_name_and_sql_together_or_neither(lake):
    fails(kbak_query("topic_inventory", "--sql", "SELECT 1", "--lake", lake[0]), "not both")
    fails(kbak_query("--lake", lake[0]), "give a query NAME, --sql or --list")
    fails(kbak_query("topic_inventory"), "--lake is required")


def test_a_missing_data_file_is_one_line_naming_it_whatever_the_reader(lake, tmp_path):
    path, _ = lake
    copy = tmp_path / "lake"
    shutil.copytree(path, copy)
    gone = sorted(copy.glob("topic=*/date=*/*.parquet"))[0]
    gone.unlink()  # as a hand-run `rm` or a foreign lifecycle rule would leave it
    for reader in ((), ("--reader", "parquet")):  # the parquet reader's files: no fallback reads them
        proc = kbak_query("--sql", "SELECT count(*) FROM records", "--lake", str(copy), *reader, "-f", "csv")
        fails(proc, f"cannot read the data files of {copy}", gone.name)
    fails(kbak_query("--sql", "SELECT count(*) FROM records", "--lake", str(copy), "--reader", "delta_scan"), gone.name)
