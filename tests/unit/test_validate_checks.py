"""Validation checks on hand-made chains (local lakes built with the commit path, no servers).

Also: the docs' table of checks is generated from ``Check``, and manifest bodies round-trip.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pytest
from support.custody_lakes import record_rows

from pipeline.core.storage import Lake
from pipeline.custody import manifest
from pipeline.custody.checks import Check, checks_markdown
from pipeline.custody.manifest import FileEntry, ManifestBody, Operation
from pipeline.custody.validate import validate
from pipeline.ingest.commit import commit_records, ensure_table

ROOT = Path(__file__).resolve().parents[2]


rows = record_rows


@pytest.fixture()
def lake(tmp_path) -> Lake:
    """Version 0 (create), 1 (p0 offsets 0..9), 2 (p0 10..19 and p1 0..4): all sealed."""
    lake = Lake.at(tmp_path / "lake")
    dt = ensure_table(lake)
    commit_records(lake, dt, rows("t", 0, 0, 10), {("t", 0): None}, source_cluster="c", backup_id="run-1")
    both = pa.concat_tables([rows("t", 0, 10, 10), rows("t", 1, 0, 5)])
    commit_records(lake, dt, both, {("t", 0): 9, ("t", 1): None}, source_cluster="c", backup_id="run-2")
    return lake


def checks(report, severity: str = "error") -> set[str]:
    return {f.check.value for f in report.findings if f.severity == severity}


def test_docs_table_of_checks_is_generated_from_the_enum():
    doc = ROOT / "docs" / "custody.md"
    text = (doc if doc.exists() else ROOT / "README.md").read_text()
    table = re.search(r"^\| check \| verifies \|\n(?:^\|.*\n)+", text, re.M)
    assert table, "no table of checks in the docs"
    assert table.group(0) == checks_markdown()


def test_every_check_validate_raises_is_a_member():
    source = (ROOT / "pipeline" / "custody" / "validate.py").read_text()
    used = set(re.findall(r"Check\.([A-Z0-9_]+)", source))
    assert used <= set(Check.__members__)
    assert "PARTITION_DATE" in used


def test_manifest_body_round_trips_and_keeps_unknown_keys():
    body = ManifestBody(
        operation=Operation.INGEST,
        backup_id="b",
        files_added=[FileEntry("p", 1, 2, "ab", {"topic": "t"}), FileEntry("q")],
        extra={"future_field": [1]},
    )
    d = body.to_dict()
    assert d["operation"] == "ingest" and d["future_field"] == [1]
    assert "partition_values" not in d["files_added"][1] and "sealed_from_log" not in d
    assert ManifestBody.from_dict(json.loads(json.dumps(d))).to_dict() == d
    assert ManifestBody.from_dict({"files_added": "junk"}).files_added == []


def test_sealed_ingest_bodies_round_trip_byte_for_byte(lake):
    for v in (0, 1, 2):
        body = manifest.read_manifest(lake, v)["body"]
        assert manifest.canonical_json(ManifestBody.from_dict(body).to_dict()) == manifest.canonical_json(body)


def test_hand_made_chain_is_valid_deep(lake):
    report = validate(lake, deep=True)
    assert report.valid, report.findings
    assert report.versions == 3 and report.records == 25 and not report.warnings


def test_edited_manifest_breaks_the_chain_link(lake):
    path = lake.path(manifest.manifest_path(1))
    m = json.loads(Path(path).read_bytes())
    m["body"]["backup_id"] = "forged"
    m["body_sha256"] = manifest.sha256_hex(manifest.canonical_json(m["body"]))
    Path(path).write_bytes(manifest.canonical_json(m))
    assert {"manifest-body-digest", "chain-link"} <= checks(validate(lake))


def test_missing_manifest(lake):
    Path(lake.path(manifest.manifest_path(2))).unlink()
    assert "manifest-present" in checks(validate(lake))


def test_truncated_log_entry_is_named_as_corrupt_not_foreign(lake):
    path = Path(lake.path(manifest.log_path(2)))
    path.write_bytes(path.read_bytes()[:200])
    report = validate(lake)
    found = [f for f in report.findings if f.check is Check.DELTA_LOG_PARSEABLE]
    assert found and found[0].subject == manifest.log_path(2) and found[0].severity == "error"
    assert "foreign-commit" not in checks(report, "warning")


def test_orphan_staged_body_is_a_warning_that_says_what_it_is(lake):
    manifest.stage(lake, ManifestBody(operation=Operation.INGEST, backup_id="lost-race"))
    report = validate(lake)
    assert report.valid
    (orphan,) = [f for f in report.warnings if f.check is Check.ORPHAN_STAGED_BODY]
    assert "never committed" in orphan.message and "harmless" in orphan.message


def test_missing_file_reports_the_offsets_it_held_as_lost(lake):
    body = manifest.read_manifest(lake, 2)["body"]
    p1_file = next(f["path"] for f in body["files_added"])
    Path(lake.path(p1_file)).unlink()
    report = validate(lake, deep=True)
    assert "file-present" in checks(report)
    lost = [g for g in report.gaps if g["reason"].startswith("lost")]
    assert {(g["partition"], g["first_missing"], g["last_missing"]) for g in lost} == {(0, 10, 19), (1, 0, 4)}
