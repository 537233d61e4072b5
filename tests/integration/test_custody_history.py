"""``kbak list`` and ``kbak describe`` on a lake built by two real ingest runs; unsealed-version recovery."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from deltalake import write_deltalake
from support.custody_lakes import DAY_MS, NOV_1_2024_MS, ingest, two_runs
from support.kbak_testing import one_line_error, run_kbak

from pipeline.custody.manifest import canonical_json, manifest_path, sha256_hex, staged_path


@pytest.fixture()
def built(two_run_lake):
    r = two_run_lake
    return r.lake, r.topic, r.first, r.second


def run_out(*args: str, code: int = 0) -> str:
    proc = run_kbak(*args)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    return proc.stdout


def test_list_shows_one_line_per_run_newest_last(built):
    lake, topic, first, second = built
    data = json.loads(run_out("list", "--lake", str(lake), "--format", "json"))
    runs = data["runs"]
    assert [r["operation"] for r in runs] == ["create", "ingest", "ingest"]
    assert [r["backup_id"] for r in runs[1:]] == [first["backup_id"], second["backup_id"]]
    assert [(r["first_version"], r["last_version"]) for r in runs] == [(0, 0), (1, 1), (2, 2)]
    assert [r["records"] for r in runs] == [0, 60, 30]
    assert [r["bytes"] for r in runs[1:]] == [first["bytes_written"], second["bytes_written"]]
    assert all(r["topics"] == [topic] and r["outcome"] == "sealed" for r in runs[1:])
    assert all(r["created_at"] for r in runs)
    (cov,) = data["topics"]
    assert cov["topic"] == topic and cov["records"] == 90
    assert [(p["partition"], p["first_offset"], p["last_offset"], p["records"]) for p in cov["partitions"]] == [
        (0, 0, 29, 30),
        (1, 0, 29, 30),
        (2, 0, 29, 30),
    ]
    assert cov["first_timestamp_ms"] == NOV_1_2024_MS
    assert cov["last_timestamp_ms"] == NOV_1_2024_MS + 4 * DAY_MS + 29 * 60_000
    head = data["head"]
    assert head["version"] == 2
    assert head["manifest_sha256"] == sha256_hex((lake / manifest_path(2)).read_bytes())

    text = run_out("list", "--lake", str(lake)).splitlines()
    lines = [line for line in text if line.startswith(("create", "ingest-"))]
    assert [line.split()[0] for line in lines] == ["create", first["backup_id"], second["backup_id"]]
    assert any(f"{topic}: 90 records" in line for line in text)


def test_describe_json_has_every_manifest_field_and_real_checksums(built):
    lake, topic, first, _second = built
    d = json.loads(run_out("describe", "--lake", str(lake), "--version", "1", "--format", "json"))
    assert d["version"] == 1 and d["status"] == "sealed" and d["operation"] == "ingest"
    assert d["backup_id"] == first["backup_id"] and d["source_cluster"] == first["source_cluster"]
    assert "kbak/" in d["created_by"] and "@" in d["created_by"] and d["created_at"].startswith("20")
    assert {(p["topic"], p["partition"], p["records"]) for p in d["partitions"]} == {(topic, p, 20) for p in range(3)}
    assert d["previous_manifest_sha256"] == sha256_hex((lake / manifest_path(0)).read_bytes())
    assert d["manifest_sha256"] == sha256_hex((lake / manifest_path(1)).read_bytes())
    assert d["delta_log_sha256"] == sha256_hex((lake / "_delta_log" / f"{1:020d}.json").read_bytes())
    # jq '.checksums' as the compliance docs use it: path -> sha256:<hex> of the bytes on disk
    assert set(d["checksums"]) == {f["path"] for f in d["files_added"]} and d["checksums"]
    for path, digest in d["checksums"].items():
        assert digest == "sha256:" + hashlib.sha256((lake / path).read_bytes()).hexdigest()
    assert sum(f["records"] for f in d["files_added"]) == 60

    as_yaml = yaml.safe_load(run_out("describe", "--lake", str(lake), "--version", "1", "--format", "yaml"))
    assert as_yaml == d
    text = run_out("describe", "--lake", str(lake), "--version", "1")
    assert first["backup_id"] in text and all(f"sha256:{v[7:]}" in text for v in d["checksums"].values())


def test_describe_by_backup_id_and_default_latest(built):
    lake, _topic, _first, second = built
    d = json.loads(run_out("describe", "--lake", str(lake), "--backup-id", second["backup_id"], "--format", "json"))
    assert [v["version"] for v in d["versions"]] == [2] and d["records"] == 30
    assert d["checksums"] == d["versions"][0]["checksums"]
    latest = json.loads(run_out("describe", "--lake", str(lake), "--format", "json"))
    assert latest["version"] == 2


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("describe", "--version", "99"), 2, "has no version 99"),
        (("describe", "--version", "1", "--backup-id", "x"), 2, "not both"),
        (("describe", "--backup-id", "nope"), 2, "no ingest run with backup_id 'nope'"),
        (("describe", "--format", "xml"), 2, "xml"),
        (("validate", "--backup-id", "nope"), 2, "no ingest run with backup_id 'nope'"),
        (("validate", "--format", "xml"), 2, "xml"),
    ],
)
def test_bad_input(built, args, code, message):
    lake = built[0]
    proc = run_kbak(*args, "--lake", str(lake))
    assert proc.returncode == code
    assert message in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("command", ["list", "describe", "validate", "report"])
def test_not_an_archive(tmp_path, command):
    extra = ("--period", "2024-11") if command == "report" else ()
    proc = run_kbak(command, "--lake", str(tmp_path / "nothing"), *extra)
    assert proc.returncode == 2
    assert "no kbak archive" in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["list", "describe", "validate", "report"])
def test_another_tools_delta_table_is_not_an_archive(tmp_path, command):
    """A mistyped --lake pointing at a BI table is said so, not reported as an archive missing every manifest."""
    other = tmp_path / "bi-table"
    write_deltalake(str(other), pa.table({"id": [1, 2]}))
    extra = ("--period", "2024-11") if command == "report" else ()
    proc = run_kbak(command, "--lake", str(other), *extra)
    assert proc.returncode == 2
    assert one_line_error(proc).endswith("is a Delta table but not a kbak archive: kbak did not create it")


def crash_after_commit(lake: Path, version: int) -> bytes:
    """Put the lake in the state a crash between the Delta commit and sealing leaves; returns the manifest."""
    sealed = (lake / manifest_path(version)).read_bytes()
    body = canonical_json(json.loads(sealed)["body"])
    (lake / staged_path(sha256_hex(body))).write_bytes(body)
    (lake / manifest_path(version)).unlink()
    return sealed


def test_crash_between_commit_and_seal_is_unsealed_then_sealed_identically(kafka, tmp_path, topic_name):
    topic = topic_name("seal")
    lake = tmp_path / "lake"
    two_runs(kafka, topic, str(lake))
    sealed = crash_after_commit(lake, 2)

    report = json.loads(run_out("validate", "--lake", str(lake), "--deep", "--format", "json"))
    assert report["valid"] and report["errors"] == []
    assert [(w["check"], w["subject"]) for w in report["warnings"]] == [("manifest-present", manifest_path(2))]
    assert "unsealed" in report["warnings"][0]["message"]
    runs = json.loads(run_out("list", "--lake", str(lake), "--format", "json"))["runs"]
    assert runs[-1]["outcome"] == "unsealed" and runs[-1]["records"] == 30
    assert json.loads(run_out("describe", "--lake", str(lake), "--format", "json"))["status"] == "unsealed"

    # `validate --repair` seals it, byte for byte as the first time; young orphans are only reported.
    orphan = canonical_json({"operation": "ingest", "files_added": []})
    orphan_rel = staged_path(sha256_hex(orphan))
    (lake / orphan_rel).write_bytes(orphan)
    out = run_out("validate", "--lake", str(lake), "--repair")
    assert out.startswith("VALID") and "sealed versions [2]" in out
    assert "orphan-staged-body" in out and orphan_rel in out
    assert (lake / manifest_path(2)).read_bytes() == sealed
    (lake / orphan_rel).unlink()

    # So does the next ingest (no new records).
    crash_after_commit(lake, 2)
    assert ingest(kafka, topic, str(lake))["records"] == 0
    assert (lake / manifest_path(2)).read_bytes() == sealed
    assert not list((lake / "_kbak" / "custody" / "staged").glob("*.json"))
    report = json.loads(run_out("validate", "--lake", str(lake), "--format", "json"))
    assert report["valid"] and report["warnings"] == []


@pytest.mark.parametrize("command", ["list", "describe", "validate", "report", "hold"])
def test_lake_is_required(command):
    extra = {"report": ("--period", "2024-11"), "hold": ("--status",)}.get(command, ())
    proc = run_kbak(command, *extra)
    assert proc.returncode == (2 if command == "validate" else 1)
    assert "--lake is required" in proc.stderr
