"""Validation checks on hand-made chains (local lakes built with the commit path, no servers).

Also: the docs' table of checks is generated from ``Check``, and manifest bodies round-trip.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
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


def live_files(lake: Lake) -> list[str]:
    return [f["path"] for v in (1, 2) for f in manifest.read_manifest(lake, v)["body"]["files_added"]]


def test_flipped_byte_fails_file_sha256_only_when_deep(lake):
    path = Path(lake.path(live_files(lake)[0]))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert validate(lake).valid
    assert "file-sha256" in checks(validate(lake, deep=True))


def test_deleted_file_fails_file_present_shallow(lake):
    Path(lake.path(live_files(lake)[0])).unlink()
    report = validate(lake)
    assert [(f.check, f.subject) for f in report.errors] == [(Check.FILE_PRESENT, live_files(lake)[0])]


def test_appended_bytes_fail_file_size(lake):
    with open(lake.path(live_files(lake)[1]), "ab") as fh:
        fh.write(b"x")
    assert "file-size" in checks(validate(lake))


def test_rewritten_log_entry_fails_delta_log_digest(lake):
    path = Path(lake.path(manifest.log_path(1)))
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    for a in lines:
        if "commitInfo" in a:
            a["commitInfo"]["kbak.records"] = 9
    path.write_text("\n".join(json.dumps(a) for a in lines) + "\n")
    report = validate(lake)
    assert [(f.check, f.subject) for f in report.errors] == [(Check.DELTA_LOG_DIGEST, manifest.log_path(1))]


def test_non_canonical_manifest_fails_manifest_format(lake):
    path = Path(lake.path(manifest.manifest_path(1)))
    path.write_text(json.dumps(json.loads(path.read_bytes()), indent=1))
    assert "manifest-format" in checks(validate(lake))


def test_anchor_that_no_longer_matches(lake):
    good = manifest.sha256_hex(Path(lake.path(manifest.manifest_path(1))).read_bytes())
    assert validate(lake, anchors={1: good}).valid
    assert "anchor" in checks(validate(lake, anchors={1: "0" * 64}))


def test_unsealed_version_with_its_staged_body_is_a_warning(lake):
    path = Path(lake.path(manifest.manifest_path(2)))
    body = json.loads(path.read_bytes())["body"]
    manifest.stage(lake, body)
    path.unlink()
    report = validate(lake)
    assert report.valid
    assert [(f.check, f.severity) for f in report.warnings] == [(Check.MANIFEST_PRESENT, "warning")]


def test_same_offsets_from_another_cluster_are_duplicates(lake):
    from pipeline.core.table import open_table

    dt = open_table(lake)
    commit_records(lake, dt, rows("t", 0, 0, 3), {("t", 0): None}, source_cluster="c2", backup_id="run-3")
    found = checks(validate(lake, deep=True))
    assert {"duplicate-offset", "offset-order"} <= found


def test_record_under_the_wrong_date_fails_partition_date(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    dt = ensure_table(lake)
    t = rows("t", 0, 0, 3)
    late = pa.array([datetime(2024, 11, 5, tzinfo=UTC)] * 3, t.schema.field("timestamp").type)
    t = t.set_column(t.schema.get_field_index("timestamp"), t.schema.field("timestamp"), late)
    commit_records(lake, dt, t, {("t", 0): None}, source_cluster="c", backup_id="run-1")
    assert checks(validate(lake, deep=True)) == {"partition-date"}


def test_foreign_writer_is_a_warning_once_sealed(lake):
    from deltalake import write_deltalake

    from pipeline.core.table import open_table

    write_deltalake(lake.uri, rows("t", 1, 5, 2), mode="append")
    assert "manifest-present" in checks(validate(lake))
    manifest.seal(lake, open_table(lake))
    report = validate(lake, deep=True)
    assert report.valid and Check.FOREIGN_COMMIT in {f.check for f in report.warnings}
