"""``kbak hold --case``: case holds on records, recorded in the custody chain, on local and S3 lakes."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import date

import pytest
from support.custody_lakes import two_runs
from support.kbak_testing import run_json, run_kbak

from pipeline.core.storage import Lake, S3Settings
from pipeline.custody.cases import held_partitions, open_cases


@pytest.fixture()
def lake(two_run_lake, tmp_path):
    dst = tmp_path / "lake"
    shutil.copytree(two_run_lake.lake, dst)
    return dst, two_run_lake.topic


def hold(lake, *args: str, code: int = 0, env: dict | None = None):
    proc = run_kbak("hold", "--lake", str(lake), *args, env=env)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    return proc


def test_case_hold_open_list_release(lake):
    path, topic = lake
    lk = Lake.at(path)
    hold(path, "--case", "LIT-1", "--topics", topic, "--from", "2024-11-02", "--to", "2024-11-02", "--reason", "suit")
    hold(path, "--case", "LIT-2", "--topics", "custody-.*", "--key", "k5")
    listed = run_json("hold", "--lake", str(path), "--cases")["cases"]
    assert [(c["case_id"], c["status"]) for c in listed] == [("LIT-1", "open"), ("LIT-2", "open")]
    # Keys are kept only as keyed hashes: nothing of the held subject in the lake's case files or chain.
    assert listed[1]["key_hmacs"] and all(len(h) == 64 for h in listed[1]["key_hmacs"])
    for f in list((path / "_kbak").rglob("*.json")) + list((path / "_delta_log").glob("*.json")):
        assert b'"k5"' not in f.read_bytes() and b"k5\\" not in f.read_bytes(), f
    # The read API retention uses: whole days, a keyed case only where its key is.
    assert held_partitions(lk, topic, date(2024, 11, 2)) == ["LIT-1"]
    assert held_partitions(lk, topic, date(2024, 11, 1)) == ["LIT-2"]  # k5 is at 2024-11-01 05:00
    assert held_partitions(lk, topic, date(2024, 11, 3)) == []
    assert held_partitions(lk, "other-topic", date(2024, 11, 2)) == []

    out = run_json("hold", "--lake", str(path), "--case", "LIT-1", "--release", "--reason", "settled")
    assert out["status"] == "released" and out["release_reason"] == "settled"
    assert [c.case_id for c in open_cases(lk)] == ["LIT-2"]
    assert held_partitions(lk, topic, date(2024, 11, 2)) == []
    # Both opening and releasing are versions in the chain, and the chain stays valid.
    manifests = sorted((path / "_kbak" / "custody").glob("0*.json"))
    bodies = [json.loads(m.read_bytes())["body"] for m in manifests]
    assert [b["operation"] for b in bodies[-3:]] == ["case-hold", "case-hold", "case-release"]
    assert bodies[-1]["case"]["case_id"] == "LIT-1" and bodies[-1]["case"]["release_reason"] == "settled"
    assert run_kbak("validate", "--lake", str(path), "--deep").returncode == 0
    # The case documents are checked against the chain: reopening a case by editing its file is caught.
    doc = path / "_kbak" / "cases" / "LIT-1.json"
    doc.write_text(doc.read_text().replace('"status": "released"', '"status": "open"'))
    proc = run_kbak("validate", "--lake", str(path), "--format", "json")
    assert proc.returncode == 1 and [e["check"] for e in json.loads(proc.stdout)["errors"]] == ["case-state"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--case", "NOPE", "--release"), "no case 'NOPE'"),
        (("--case", "LIT-9"), "--case needs --topics"),
        (("--case", "bad id", "--topics", "x"), "--case 'bad id'"),
        (("--case", "LIT-9", "--topics", "("), "not a valid regular expression"),
        (("--case", "LIT-9", "--topics", "x", "--from", "yesterday"), "--from 'yesterday'"),
    ],
)
def test_case_hold_bad_input(lake, args, message):
    path, _topic = lake
    before = sorted(p.name for p in (path / "_delta_log").iterdir())
    proc = hold(path, *args, code=1)
    assert proc.stderr.startswith("kbak: error: ") and message in proc.stderr and proc.stderr.count("\n") == 1
    assert sorted(p.name for p in (path / "_delta_log").iterdir()) == before


def test_case_hold_twice_and_release_twice(lake):
    path, topic = lake
    hold(path, "--case", "LIT-3", "--topics", topic)
    assert "already exists (open)" in hold(path, "--case", "LIT-3", "--topics", topic, code=1).stderr
    hold(path, "--case", "LIT-3", "--release")
    assert "already released" in hold(path, "--case", "LIT-3", "--release", code=1).stderr


def test_case_hold_not_a_lake(tmp_path):
    proc = hold(tmp_path, "--case", "LIT-4", "--topics", "x", code=1)
    assert "no kbak archive" in proc.stderr


def test_case_hold_s3_sets_and_clears_object_legal_holds(kafka, s3, topic_name):
    bucket = s3.create_bucket(f"lock-{uuid.uuid4().hex[:10]}", object_lock=True)
    topic = topic_name("custody")
    uri = f"s3://{bucket}/lake"
    two_runs(kafka, topic, uri, "--s3-endpoint", s3.endpoint, env=s3.env())
    args = ("--s3-endpoint", s3.endpoint)
    out = json.loads(hold(uri, *args, "--case", "S3-1", "--topics", topic, "--from", "2024-11-05", "--json",
                          env=s3.env()).stdout)  # fmt: skip
    assert out["objects"] and all("date=2024-11-05" in o for o in out["objects"])
    client = s3.client()

    def legal(rel: str) -> str | None:
        return client.head_object(Bucket=bucket, Key=f"lake/{rel}").get("ObjectLockLegalHoldStatus")

    assert {legal(o) for o in out["objects"]} == {"ON"}
    lk = Lake.at(uri, S3Settings(s3.endpoint, s3.region, s3.access_key, s3.secret_key))
    other = [r for r in _data_files(lk) if r not in out["objects"]]
    assert other and {legal(o) for o in other} <= {None, "OFF"}
    hold(uri, *args, "--case", "S3-1", "--release", env=s3.env())
    assert {legal(o) for o in out["objects"]} == {"OFF"}


def _data_files(lake: Lake) -> list[str]:
    return [p for p in lake.list_files() if p.endswith(".parquet") and not p.startswith("_")]


def test_erasure_beside_held_records_carries_the_case_legal_hold(kafka, s3, topic_name):
    """Erasing k6 rewrites files the case legal-held for k5: the replacements get the case's legal hold."""
    bucket = s3.create_bucket(f"lock-{uuid.uuid4().hex[:10]}", object_lock=True)
    topic = topic_name("custody")
    uri, env, args = f"s3://{bucket}/lake", s3.env(), ("--s3-endpoint", s3.endpoint)
    two_runs(kafka, topic, uri, *args, env=env)
    opened = json.loads(hold(uri, *args, "--case", "S3-2", "--topics", topic, "--key", "k5", "--json", env=env).stdout)
    assert len(opened["objects"]) == 2  # k5 is on 2024-11-01 (first run) and 2024-11-05 (second run)
    client = s3.client()

    def legal(rel: str) -> str | None:
        return client.head_object(Bucket=bucket, Key=f"lake/{rel}").get("ObjectLockLegalHoldStatus")

    out = run_json("erase", "--lake", uri, *args, "--request-id", "R-9", "--reason", "art17", "--key", "k6", env=env)
    assert out["records"] == 2  # k6 shares both files with k5
    case = run_json("hold", "--lake", uri, *args, "--cases", env=env)["cases"][0]
    replacements = [o for o in case["objects"] if o not in opened["objects"]]
    assert len(replacements) == 2 and {legal(o) for o in case["objects"]} == {"ON"}
    assert run_kbak("validate", "--lake", uri, *args, "--deep", env=env).returncode == 0  # case-state agrees

    vac = run_json("vacuum", "--lake", uri, *args, env=env)
    assert {f["path"] for f in vac["files_retained"]} == set(opened["objects"])  # the originals, legal-held
    hold(uri, *args, "--case", "S3-2", "--release", env=env)
    assert {legal(o) for o in case["objects"]} == {"OFF"}
    vac = run_json("vacuum", "--lake", uri, *args, env=env)
    assert {f["path"] for f in vac["files_deleted"]} == set(opened["objects"])
