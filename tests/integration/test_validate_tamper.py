"""``kbak validate --deep`` catches every tampering issue 5 lists, on a lake built by real ingest runs."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from support.kbak_testing import run_kbak

from pipeline.core.schema import RECORD_SCHEMA
from pipeline.custody.manifest import canonical_json, log_path, manifest_path, sha256_hex


@pytest.fixture()
def pristine(two_run_lake):
    """A lake with two ingest runs (versions 1 and 2) of one 3-partition topic; copied by each test."""
    r = two_run_lake
    assert (r.first["versions"], r.second["versions"]) == ([1, 1], [2, 2])
    return r.lake, r.topic


@pytest.fixture()
def lake(pristine, tmp_path):
    src, _topic = pristine
    dst = tmp_path / "lake"
    shutil.copytree(src, dst)
    return dst


def validate(lake, *extra: str):
    proc = run_kbak("validate", "--lake", str(lake), "--format", "json", *extra)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def failing(report: dict) -> set[tuple[str, str]]:
    return {(e["check"], e["subject"]) for e in report["errors"]}


def data_files(lake) -> list[str]:
    return sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*.parquet") if "_delta_log" not in p.parts)


def test_untouched_lake_is_valid(lake):
    for extra in ((), ("--deep",)):
        code, report = validate(lake, *extra)
        assert code == 0 and report["valid"], report
        assert report["errors"] == [] and report["warnings"] == []
        assert report["versions"] == 3 and report["records"] == 90
    assert report["head"]["version"] == 2
    assert all(g["recorded"] is False for g in report["gaps"]) and report["gaps"] == []
    text = run_kbak("validate", "--lake", str(lake), "--deep")
    assert text.returncode == 0 and text.stdout.startswith("VALID")


def test_one_flipped_byte_in_a_parquet_file(lake):
    victim = data_files(lake)[0]
    path = lake / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    assert validate(lake)[0] == 0  # same size: only the deep checks can see it
    code, report = validate(lake, "--deep")
    assert code == 1
    assert ("file-sha256", victim) in failing(report)
    text = run_kbak("validate", "--lake", str(lake), "--deep")
    assert text.returncode == 1 and "file-sha256" in text.stdout and victim in text.stdout

    # --backup-id checks only that run's files: the run that wrote the victim fails, the other passes.
    runs = json.loads(run_kbak("list", "--lake", str(lake), "--format", "json").stdout)["runs"][1:]
    by_run = {}
    for run in runs:
        d = json.loads(run_kbak("describe", "--lake", str(lake), "--backup-id", run["backup_id"], "-f", "json").stdout)
        by_run[run["backup_id"]] = set(d["checksums"])
    for backup_id, files in by_run.items():
        code, report = validate(lake, "--deep", "--backup-id", backup_id)
        assert report["files"] == len(files)
        assert (code == 1) == (victim in files)


def test_a_deleted_file(lake):
    victim = data_files(lake)[-1]
    (lake / victim).unlink()
    for extra in ((), ("--deep",)):
        code, report = validate(lake, *extra)
        assert code == 1
        assert ("file-present", victim) in failing(report)


def test_a_file_replaced_by_valid_parquet_with_other_rows(lake):
    victim = data_files(lake)[0]
    rows = pq.read_table(lake / victim)
    forged = rows.set_column(rows.schema.get_field_index("value"), "value", pa.array([b"forged"] * rows.num_rows))
    pq.write_table(forged.slice(0, rows.num_rows - 1), lake / victim, compression="zstd")

    code, report = validate(lake, "--deep")
    assert code == 1
    errors = failing(report)
    assert ("file-sha256", victim) in errors
    assert ("row-count", victim) in errors
    assert ("file-size", victim) in errors


def test_an_edited_manifest(lake):
    """Even with its body digest recomputed, the commit info and the next manifest's link give it away."""
    path = lake / manifest_path(1)
    m = json.loads(path.read_bytes())
    m["body"]["files_added"][0]["records"] += 1
    m["body_sha256"] = sha256_hex(canonical_json(m["body"]))
    path.write_bytes(canonical_json(m))

    code, report = validate(lake)
    assert code == 1
    errors = failing(report)
    assert ("manifest-body-digest", manifest_path(1)) in errors
    assert ("chain-link", manifest_path(1)) in errors


def test_a_deleted_manifest(lake):
    (lake / manifest_path(2)).unlink()
    code, report = validate(lake, "--deep")
    assert code == 1
    assert ("manifest-present", manifest_path(2)) in failing(report)
    # Re-sealing cannot hide it: the rebuilt manifest's body differs from the digest the commit carries.
    code, report = validate(lake, "--repair")
    assert code == 1 and report["repaired_versions"] == [2]
    assert ("manifest-body-digest", manifest_path(2)) in failing(report)


def test_a_rewritten_delta_log_entry(lake):
    path = lake / log_path(1)
    lines = path.read_text().splitlines()
    actions = [json.loads(line) for line in lines]
    for a in actions:
        if "commitInfo" in a:
            a["commitInfo"]["kbak.records"] = 59
    path.write_text("\n".join(json.dumps(a) for a in actions) + "\n")

    assert DeltaTable(str(lake)).version() == 2  # still a loadable table
    code, report = validate(lake)
    assert code == 1
    assert ("delta-log-digest", log_path(1)) in failing(report)


def test_a_duplicate_row_injected_by_a_foreign_writer(lake, pristine):
    _src, topic = pristine
    archived = DeltaTable(str(lake)).to_pyarrow_table()
    dup = archived.filter(pa.compute.equal(archived["offset"], 5)).slice(0, 1).cast(RECORD_SCHEMA)
    before = set(data_files(lake))
    write_deltalake(str(lake), dup, mode="append")
    (new_file,) = set(data_files(lake)) - before

    code, report = validate(lake, "--deep")
    assert code == 1
    dups = [e for e in report["errors"] if e["check"] == "duplicate-offset"]
    assert len(dups) == 1 and f"{topic}[{dup['partition'][0].as_py()}] offset 5" in dups[0]["message"]
    assert new_file in dups[0]["subject"]
    assert ("manifest-present", manifest_path(3)) in failing(report)
    assert any(w["check"] == "foreign-commit" for w in report["warnings"])

    # Sealing the foreign version (as the next ingest would) does not make the duplicate go away.
    code, report = validate(lake, "--deep", "--repair")
    assert code == 1
    assert {e["check"] for e in report["errors"]} == {"duplicate-offset", "offset-order"}
    assert ("offset-order", manifest_path(3)) in failing(report)  # version 3 re-archives offset 5


def test_a_deletion_by_a_foreign_writer_stays_visible(lake, pristine):
    _src, topic = pristine
    removed_before = {p: hashlib.sha256((lake / p).read_bytes()).hexdigest() for p in data_files(lake)}
    DeltaTable(str(lake)).delete('"offset" = 3')

    code, report = validate(lake)
    assert code == 1 and ("manifest-present", manifest_path(3)) in failing(report)
    # Sealed (by --repair or the next ingest), the deletion is recorded and flagged, never silent.
    code, report = validate(lake, "--deep", "--repair")
    assert code == 0 and report["repaired_versions"] == [3]
    warnings = {(w["check"], w["subject"]) for w in report["warnings"]}
    assert ("foreign-commit", log_path(3)) in warnings
    gap = [g for g in report["gaps"] if not g["recorded"]]
    assert [(g["partition"], g["first_missing"], g["last_missing"]) for g in gap] == [(p, 3, 3) for p in range(3)]
    assert {w["check"] for w in report["warnings"]} == {"foreign-commit", "offset-gap"}
    d = json.loads(run_kbak("describe", "--lake", str(lake), "--version", "3", "--format", "json").stdout)
    assert d["sealed_from_log"] and d["files_removed"]
    for f in d["files_removed"]:
        assert f["sha256"] == removed_before[f["path"]] and f["records"] > 0
    assert set(d["checksums"]) == {f["path"] for f in d["files_added"]}


def test_a_consistent_rewrite_of_the_whole_chain_contradicts_an_anchor(lake):
    """Forge a file, rewrite the log as a foreign writer would, re-seal: only an outside anchor can tell."""
    head = json.loads(run_kbak("list", "--lake", str(lake), "--format", "json").stdout)["head"]
    first = json.loads((lake / manifest_path(0)).read_bytes())
    v0 = sha256_hex((lake / manifest_path(0)).read_bytes())
    victim = data_files(lake)[0]
    rows = pq.read_table(lake / victim)
    forged = rows.set_column(rows.schema.get_field_index("value"), "value", pa.array([b"forged"] * rows.num_rows))
    pq.write_table(forged, lake / victim, compression="zstd")
    for v in (1, 2):
        path = lake / log_path(v)
        actions = [json.loads(line) for line in path.read_text().splitlines()]
        for a in actions:
            if "commitInfo" in a:
                a["commitInfo"] = {k: x for k, x in a["commitInfo"].items() if not k.startswith("kbak.")}
            if "add" in a and a["add"]["path"] == victim:
                a["add"]["size"] = (lake / victim).stat().st_size
        path.write_text("\n".join(json.dumps(a) for a in actions) + "\n")
        (lake / manifest_path(v)).unlink()
    code, report = validate(lake, "--deep", "--repair")
    assert code == 0, report["errors"]  # self-consistent: the custody chain alone cannot tell
    assert {w["check"] for w in report["warnings"]} == {"foreign-commit"}
    assert json.loads((lake / manifest_path(0)).read_bytes()) == first

    anchored = ("--anchor", f"{head['version']}=sha256:{head['manifest_sha256']}", "--anchor", f"0={v0}")
    code, report = validate(lake, *anchored)
    assert code == 1 and failing(report) == {("anchor", manifest_path(head["version"]))}
    bad = run_kbak("validate", "--lake", str(lake), "--anchor", "2=abc")
    assert bad.returncode == 2 and "VERSION=SHA256" in bad.stderr


def test_records_filed_under_the_wrong_date_partition(lake):
    archived = DeltaTable(str(lake)).to_pyarrow_table()
    row = archived.slice(0, 1)
    wrong_day = pa.array([row["date"][0].as_py() + timedelta(days=3)], pa.date32())
    moved = row.set_column(row.schema.get_field_index("date"), "date", wrong_day).cast(RECORD_SCHEMA)
    before = set(data_files(lake))
    write_deltalake(str(lake), moved, mode="append", partition_by=["topic", "date"])
    (new_file,) = set(data_files(lake)) - before

    code, report = validate(lake, "--deep")
    assert code == 1
    assert ("partition-date", new_file) in failing(report)


def test_truncated_log_entry_is_named_everywhere(lake, pristine):
    _src, topic = pristine
    entry = log_path(2)
    path = lake / entry
    path.write_bytes(path.read_bytes()[:150])
    code, report = validate(lake)
    assert code == 1
    assert ("delta-log-parseable", entry) in failing(report)
    assert not any(w["check"] == "foreign-commit" for w in report["warnings"])
    runs = json.loads(run_kbak("list", "--lake", str(lake), "--format", "json").stdout)["runs"]
    assert runs[-1]["outcome"] == "log-corrupt"
    d = run_kbak("describe", "--lake", str(lake), "--version", "2")
    assert d.returncode == 0 and "[log-corrupt]" in d.stdout and f"corrupt Delta log entry {entry}" in d.stdout
    for cmd, code in (
        (("query", "--sql", "select count(*) from records"), 1),
        (("replay", "--topic", topic, "--dry-run"), 1),
        (("report", "--period", "2024-11"), 1),
        (("validate", "--repair"), 1),
    ):
        proc = run_kbak(*cmd, "--lake", str(lake))
        assert proc.returncode == code, (cmd, proc.stderr)
        (line,) = proc.stderr.strip().splitlines()
        assert f"corrupt Delta log entry {entry}: " in line, (cmd, line)


def test_orphan_staged_body_says_what_it_is(lake):
    from pipeline.core.storage import Lake
    from pipeline.custody.manifest import ManifestBody, Operation, stage

    stage(Lake.at(lake), ManifestBody(operation=Operation.INGEST, backup_id="lost-race"))
    proc = run_kbak("validate", "--lake", str(lake))
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if "orphan-staged-body" in x]
    assert line.startswith("WARNING") and "never committed" in line and "harmless" in line and "--repair" in line


def test_deleted_file_reports_the_offsets_it_held_as_lost(lake):
    victim = data_files(lake)[0]
    (lake / victim).unlink()
    code, report = validate(lake, "--deep")
    assert code == 1 and ("file-present", victim) in failing(report)
    lost = [g for g in report["gaps"] if g.get("lost_with") == victim]
    assert lost and all(g["reason"] == f"lost: file {victim} is missing" for g in lost)
    lost_errors = [e for e in report["errors"] if e["check"] == "offset-gap"]
    assert len(lost_errors) == len(lost)
    # every offset the file held is listed: the counts add up to its rows, per its manifest
    entries = [
        f
        for v in (1, 2)
        for f in json.loads(run_kbak("describe", "--lake", str(lake), "--version", str(v), "-f", "json").stdout)[
            "files_added"
        ]
    ]
    (entry,) = [f for f in entries if f["path"] == victim]
    assert sum(g["count"] for g in lost) == entry["records"]
