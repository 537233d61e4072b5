"""Kept schema documents under custody: ``kbak validate`` catches an edited document, and a document
written by an ingest killed before its commit is listed by the next run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from support.kbak_testing import run_kbak
from support.schema_registry import FixtureRegistry
from support.wire_records import payment, produce_payments

from pipeline.dev.sample import create_topics


def _validate(lake: str) -> tuple[int, dict]:
    proc = run_kbak("validate", "--lake", lake, "--format", "json")
    return proc.returncode, json.loads(proc.stdout)


def test_an_edited_schema_document_fails_validation(schema_lake, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(schema_lake.lake, lake)
    doc = lake / "_kbak" / "schemas" / "100.json"
    doc.write_text(doc.read_text().replace("amount_cents", "amount_cent$"))
    code, report = _validate(str(lake))
    assert code == 1 and not report["valid"]
    assert [(e["check"], e["subject"]) for e in report["errors"]] == [("schema-sha256", "_kbak/schemas/100.json")]
    doc.unlink()
    _code, report = _validate(str(lake))
    assert "missing from storage" in report["errors"][0]["message"]


def test_a_schema_kept_by_a_killed_run_is_listed_by_the_next(kafka, topic_name, tmp_path):
    lake = tmp_path / "lake"
    with FixtureRegistry(first_id=30) as registry:
        topic = topic_name("savro-killed")
        create_topics(kafka.bootstrap, {topic: 1})
        produce_payments(kafka.bootstrap, topic, "avro", registry.url, [payment(i) for i in range(3)])
        args = ("ingest", "-b", kafka.bootstrap, "--topics", topic, "--lake", str(lake), "--once",
                "--schema-registry", registry.url)  # fmt: skip
        killed = run_kbak(*args, env={"KBAK_FAULT": "before-commit"})
        assert killed.returncode != 0
        assert (lake / "_kbak" / "schemas" / "30.json").exists()
        _code, report = _validate(str(lake))
        assert ("schema-listed", "_kbak/schemas/30.json") in [(w["check"], w["subject"]) for w in report["warnings"]]
        assert run_kbak(*args).returncode == 0
    code, report = _validate(str(lake))
    assert code == 0 and not [w for w in report["warnings"] if w["check"].startswith("schema")]
    listed = [
        e["id"]
        for p in sorted((lake / "_kbak" / "custody").glob("0*.json"))
        for e in json.loads(Path(p).read_text())["body"].get("schemas", [])
    ]
    assert listed == [30]
