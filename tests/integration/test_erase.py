"""``kbak erase``: a subject erased from every version, provably, with the custody chain intact."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support import erase_lakes
from support.custody_lakes import two_runs
from support.erase_lakes import SUBJECT, is_subject
from support.kbak_testing import Rec, consume_all, produce, run_json, run_kbak
from support.s3_fault_proxy import FaultProxy
from support.schema_lake import CUSTOMER as SCHEMA_CUSTOMER


@pytest.fixture(scope="module")
def built(kafka, tmp_path_factory):
    lake = str(tmp_path_factory.mktemp("erase") / "lake")
    return erase_lakes.build(kafka, lake, f"erase-{uuid.uuid4().hex[:8]}")


@pytest.fixture()
def scenario(built, tmp_path):
    dst = tmp_path / "lake"
    shutil.copytree(built.lake, dst)
    return built, str(dst)


def erase(lake: str, *args: str, code: int = 0, env: dict | None = None):
    proc = run_kbak("erase", "--lake", lake, *args, env=env)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    return proc


def query_rows(lake: str, tmp: Path, *extra: str) -> list[Rec]:
    """Every row kbak query returns (through the CLI, as Parquet: byte-exact)."""
    out = tmp / f"q-{len(list(tmp.iterdir()))}.parquet"
    proc = run_kbak("query", "--lake", lake, "--sql", "SELECT * FROM records", "-f", "parquet", "-o", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    rows = [Rec.from_row(r) for r in pq.read_table(out).to_pylist()]
    return sorted(rows, key=lambda r: (r.topic, r.partition, r.offset))


SELECTORS = ("--key", SUBJECT, "--json-field", f"customer_id={SUBJECT}", "--header", f"user={SUBJECT}")


def test_erase_subject_at_every_version(scenario, kafka, tmp_path, topic_name):
    built, lake = scenario
    every = {(r.topic, r.partition, r.offset) for rows in built.versions.values() for r in rows if is_subject(r)}
    assert len(every) > 10 and any(not is_subject(r) for r in built.versions[built.head])
    head = built.head
    in_current = {(r.topic, r.partition, r.offset) for r in built.versions[head] if is_subject(r)}
    assert every - in_current, "some of the subject's records must be only in older versions (day 4 deleted)"
    before = sorted(p.relative_to(lake) for p in Path(lake).rglob("*"))

    dry = run_json("erase", "--lake", lake, "--request-id", "REQ-1", "--reason", "GDPR Art. 17", *SELECTORS,
                   "--dry-run")  # fmt: skip
    assert dry["records"] == len(every) and dry["dry_run"]
    assert dry["files_to_rewrite"]["historical"] > 0 and dry["files_to_rewrite"]["current"] > 0
    assert sorted(p.relative_to(lake) for p in Path(lake).rglob("*") if p.name != "erasure.key") == before

    out = run_json("erase", "--lake", lake, "--request-id", "REQ-1", "--reason", "GDPR Art. 17", *SELECTORS)
    assert out["records"] == len(every) and out["version"] == head + 1
    assert sum(p["records"] for p in out["partitions"]) == len(every)
    assert {p["topic"] for p in out["partitions"]} == set(built.topics)
    # kbak list counts the records erased, not the records the rewritten files hold.
    listed = run_json("list", "--lake", lake)["runs"][-1]
    assert (listed["operation"], listed["records"], listed["records_removed"]) == ("erase", 0, len(every))
    erase_row = [line for line in run_kbak("list", "--lake", lake).stdout.splitlines() if line.startswith("erase ")]
    assert len(erase_row) == 1 and f" -{len(every)} " in erase_row[0]

    # Every read at every version: that version's records minus the subject's, byte for byte.
    assert_every_version(built, lake, tmp_path)

    # Replay of an old version restores everything except the subject.
    source, target = built.topics[0], topic_name("restored")
    run_json("replay", "--lake", lake, "--topic", source, "--as-of", "2", "-b", kafka.bootstrap,
             "--topic-map", f"{source}={target}", "--create-topics")  # fmt: skip
    got = consume_all(kafka.bootstrap, target, 3)
    want = [r for r in built.versions[2] if r.topic == source and not is_subject(r)]
    assert _content(got) == _content(want)

    # The chain stays intact and explains the holes.
    proc = run_kbak("validate", "--lake", lake, "--deep", "--format", "json")
    assert proc.returncode == 0, proc.stdout
    # Holes are the erased records (reason "erased") or day 4, deleted by another Delta writer (unexplained).
    deleted = {(r.topic, r.partition, r.offset) for r in built.versions[2]} - {
        (r.topic, r.partition, r.offset) for r in built.versions[head]
    }
    gaps = json.loads(proc.stdout)["gaps"]
    queried = run_json_query(lake, "offset_gaps")
    for holes in (gaps, queried):
        assert {g["reason"] for g in holes} == {"erased", "unexplained"}
        for g in holes:
            offsets = {(g["topic"], g["partition"], o) for o in range(g["first_missing"], g["last_missing"] + 1)}
            assert offsets <= (every if g["reason"] == "erased" else every | deleted), g
    erased_holes = [[(g["topic"], g["partition"], g["first_missing"]) for g in holes if g["reason"] == "erased"]
                    for holes in (gaps, queried)]  # fmt: skip
    assert erased_holes[0] and erased_holes[0] == erased_holes[1]

    # Nothing of the subject anywhere in the lake but the originals vacuum deletes.
    manifest = json.loads(Path(lake, f"_kbak/custody/{head + 1:020d}.json").read_bytes())["body"]
    originals = {s["original"] for s in manifest["files_scrubbed"]}
    assert manifest["operation"] == "erase" and manifest["request_id"] == "REQ-1"
    assert {s["kind"] for s in manifest["selectors"]} == {"key", "json-field", "header"}
    assert list(Path(lake, "_delta_log").glob("*.checkpoint.parquet"))  # scanned too
    assert_no_subject(lake, skip=originals)

    # --status proves it by key, by JSON field and by request id, without the lake holding the key.
    for args in (("--key", SUBJECT), ("--json-field", f"customer_id={SUBJECT}"), ("--request-id", "REQ-1")):
        st = run_json("erase", "--lake", lake, "--status", *args)["erasures"]
        assert [(e["request_id"], e["version"], e["records_erased"]) for e in st] == [("REQ-1", head + 1, len(every))]
        assert st[0]["state"].startswith("erased from every read;") and "await kbak vacuum" in st[0]["state"]
    text = erase(lake, "--status", "--key", SUBJECT).stdout
    assert f"request REQ-1: version {head + 1}" in text and "GDPR Art. 17" in text
    assert "no erasure of that key" in erase(lake, "--status", "--key", "user-1", code=1).stderr

    # kbak vacuum deletes the originals at once: then nothing of the subject is left anywhere. Every file
    # is made a day old first, so the replacements outside the log (which older versions read) face
    # vacuum's orphan rule too: they are named by the erase manifest, and stay.
    a_day_ago = time.time() - 25 * 3600
    for data_file in Path(lake).rglob("*.parquet"):
        os.utime(data_file, (a_day_ago, a_day_ago))
    vac = run_json("vacuum", "--lake", lake)
    assert {f["path"] for f in vac["files_deleted"] if f["reason"] == "erased"} == originals
    replacements = {s["replacement"] for s in manifest["files_scrubbed"] if s["replacement"]}
    assert replacements and all(Path(lake, r).exists() for r in replacements)
    assert_no_subject(lake)
    assert_every_version(built, lake, tmp_path)
    assert run_kbak("validate", "--lake", lake, "--deep").returncode == 0
    st = run_json("erase", "--lake", lake, "--status", "--request-id", "REQ-1")["erasures"][0]
    assert st["state"] == "erased from every read and deleted from storage"

    # Ingest after the erasure goes on exactly once and never re-archives the erased records.
    produce(kafka.bootstrap, erase_lakes.batch(built.topics, 900, [6], 6, subject_every=None))
    done = run_json("ingest", "-b", kafka.bootstrap, "--topics", f"{built.topics[0][:-2]}-.*", "--lake", lake, "--once")
    assert done["records"] == 6
    after = query_rows(lake, tmp_path)
    assert not any(is_subject(r) for r in after) and len(after) == len(built.versions[head]) - len(in_current) + 6
    assert run_kbak("validate", "--lake", lake, "--deep").returncode == 0


def assert_every_version(built, lake: str, tmp: Path) -> None:
    """kbak query at every version (and at a time) gives that version's records minus the subject's."""
    for version in range(1, built.head + 2):
        want = [r for r in built.versions[min(version, built.head)] if not is_subject(r)]
        assert query_rows(lake, tmp, "--as-of", str(version)) == want, version
    assert query_rows(lake, tmp) == [r for r in built.versions[built.head] if not is_subject(r)]
    mid = [r for r in built.versions[built.mid_version] if not is_subject(r)]
    assert query_rows(lake, tmp, "--as-of", built.mid_time) == mid


def run_json_query(lake: str, name: str) -> list[dict]:
    proc = run_kbak("query", name, "--lake", lake, "-f", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_no_subject(lake: str, skip: set[str] = frozenset()) -> None:
    """Every object of the lake, byte for byte, and every Parquet file decoded, holds nothing of the subject."""
    needle = SUBJECT.encode()
    scanned = 0
    for path in Path(lake).rglob("*"):
        rel = str(path.relative_to(lake))
        if not path.is_file() or rel in skip:
            continue
        data = path.read_bytes()
        assert needle not in data, rel
        if rel.endswith(".parquet") and not rel.startswith("_delta_log"):
            for row in pq.read_table(path).to_pylist():
                assert not is_subject(Rec.from_row({**row, "topic": "", "partition": 0, "offset": 0})), rel
            scanned += 1
    assert scanned > 0


def _content(recs) -> list[tuple]:
    """What a replay must restore (offsets are the target's own)."""
    return sorted((r.partition, r.key, r.value, r.headers, r.timestamp_ms) for r in recs)


def test_case_hold_blocks_erasure_until_released(two_run_lake, tmp_path):
    lake = str(tmp_path / "lake")
    shutil.copytree(two_run_lake.lake, lake)
    topic = two_run_lake.topic
    run_kbak("hold", "--lake", lake, "--case", "LIT-7", "--topics", topic, "--key", "k5", check=True)
    before = sorted(Path(lake, "_delta_log").iterdir())
    refused = erase(lake, "--request-id", "R-1", "--reason", "art17", "--key", "k5", "--key", "k6", code=1)
    assert "under case hold: LIT-7 (2 records)" in refused.stderr and refused.stderr.count("\n") == 1
    assert sorted(Path(lake, "_delta_log").iterdir()) == before

    kept = run_json("erase", "--lake", lake, "--request-id", "R-1", "--reason", "art17", "--key", "k5", "--key", "k6",
                    "--except-held")  # fmt: skip
    assert kept["records"] == 2 and kept["held_kept"] == [{"case": "LIT-7", "records": 2}]
    keys = [r.key for r in query_rows(lake, tmp_path)]
    assert b"k6" not in keys and keys.count(b"k5") == 2

    run_kbak("hold", "--lake", lake, "--case", "LIT-7", "--release", "--reason", "case closed", check=True)
    done = run_json("erase", "--lake", lake, "--request-id", "R-2", "--reason", "art17", "--key", "k5")
    assert done["records"] == 2 and done["held_kept"] == []
    assert not {b"k5", b"k6"} & {r.key for r in query_rows(lake, tmp_path, "--as-of", "1")}
    assert run_kbak("validate", "--lake", lake, "--deep").returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--request-id", "R", "--reason", "x"), "give at least one selector"),
        (("--request-id", "R", "--reason", "x", "--json-field", "customer_id"), "--json-field 'cu…': use NAME=VALUE"),
        (("--request-id", "R", "--reason", "x", "--header", "=v"), "--header"),
        (("--reason", "x", "--key", "k1"), "--request-id is required"),
        (("--request-id", "R", "--key", "k1"), "--reason is required"),
        (("--request-id", "R", "--reason", "x", "--key", "k1", "--topics", "("), "not a valid regular expression"),
    ],
)
def test_erase_bad_input(two_run_lake, tmp_path, args, message):
    lake = str(tmp_path / "lake")
    shutil.copytree(two_run_lake.lake, lake)
    before = sorted(str(p) for p in Path(lake).rglob("*"))
    proc = erase(lake, *args, code=1)
    assert proc.stderr.startswith("kbak: error: ") and message in proc.stderr and proc.stderr.count("\n") == 1
    assert "customer_id" not in proc.stderr  # an identifier is never echoed in full
    assert sorted(str(p) for p in Path(lake).rglob("*")) == before


def test_erase_not_a_lake_and_nothing_matching(two_run_lake, tmp_path):
    proc = erase(str(tmp_path), "--request-id", "R", "--reason", "x", "--key", "k1", code=1)
    assert "no kbak archive" in proc.stderr
    lake = str(tmp_path / "lake")
    shutil.copytree(two_run_lake.lake, lake)
    log = sorted(Path(lake, "_delta_log").iterdir())
    out = erase(lake, "--request-id", "R", "--reason", "x", "--key", "nobody").stdout
    assert out.startswith("erased 0 records")
    assert sorted(Path(lake, "_delta_log").iterdir()) == log


def test_erase_on_an_object_lock_lake(kafka, s3, topic_name):
    """Erasure is immediate for reads; vacuum keeps the locked originals and says until when, then deletes them."""
    bucket = s3.create_bucket(f"lock-{uuid.uuid4().hex[:10]}", object_lock=True)
    uri, env = f"s3://{bucket}/lake", s3.env()
    lake = ("--lake", uri, "--s3-endpoint", s3.endpoint)
    two_runs(kafka, topic_name("erase-s3"), uri, "--s3-endpoint", s3.endpoint, env=env)
    client = s3.client()
    until = datetime.now(UTC) + timedelta(seconds=20)
    data = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="lake/topic=")["Contents"]]
    for key in data:
        client.put_object_retention(Bucket=bucket, Key=key, Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})

    out = run_json("erase", *lake, "--request-id", "REQ-S3", "--reason", "art17", "--key", "k5", env=env)
    assert out["records"] == 2
    for as_of in ((), ("--as-of", "1")):
        proc = run_kbak("query", *lake, "--sql", "SELECT count(*) AS n FROM records WHERE key = 'k5'::BLOB",
                        "-f", "json", *as_of, env=env)  # fmt: skip
        assert proc.returncode == 0 and json.loads(proc.stdout) == [{"n": 0}], proc.stderr

    vac = run_json("vacuum", *lake, env=env)
    assert vac["files_deleted"] == [] and len(vac["files_retained"]) == 2
    assert all(f["reason"] == "object-lock" and f["retain_until"] for f in vac["files_retained"])
    state = run_json("erase", *lake, "--status", "--key", "k5", env=env)["erasures"][0]["state"]
    assert state.startswith("erased from every read; 2 files physically retained under Object Lock until 20")

    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 1)
    vac = run_json("vacuum", *lake, env=env)
    originals = {f["path"] for f in vac["files_deleted"]}
    assert len(originals) == 2 and vac["files_retained"] == []
    for path in originals:  # every S3 version of it is gone
        versions = client.list_object_versions(Bucket=bucket, Prefix=f"lake/{path}")
        assert not versions.get("Versions") and not versions.get("DeleteMarkers")
    state = run_json("erase", *lake, "--status", "--key", "k5", env=env)["erasures"][0]["state"]
    assert state == "erased from every read and deleted from storage"
    assert run_kbak("validate", *lake, "--deep", env=env).returncode == 0


def test_storage_failure_during_erasure_changes_nothing_and_a_rerun_completes(kafka, s3, bucket, topic_name):
    topic = topic_name("erase-fail")
    uri, env = f"s3://{bucket}/lake", s3.env()
    two_runs(kafka, topic, uri, "--s3-endpoint", s3.endpoint, env=env)
    with FaultProxy(s3.endpoint) as proxy:
        lake = ("--lake", uri, "--s3-endpoint", proxy.endpoint)
        request = ("--request-id", "REQ-F", "--reason", "art17", "--key", "k7")

        def k7(*as_of: str) -> int:
            sql = "SELECT count(*) AS n FROM records WHERE key = 'k7'::BLOB"
            proc = run_kbak("query", *lake, "--sql", sql, "-f", "json", *as_of, env=env)
            assert proc.returncode == 0, proc.stderr
            return json.loads(proc.stdout)[0]["n"]

        proxy.fail_when = lambda method, path: method == "PUT" and "/_delta_log/" in path
        proc = erase_failing(lake, request, env)
        assert "erase commit" in proc.stderr and proxy.failed > 1
        assert (k7(), k7("--as-of", "1")) == (2, 1)  # nothing half-erased, at any version
        assert "no erasure of request 'REQ-F'" in run_kbak("erase", *lake, "--status", "--request-id", "REQ-F",
                                                           env=env).stderr  # fmt: skip

        proxy.heal()
        assert run_json("erase", *lake, *request, env=env)["records"] == 2
        assert (k7(), k7("--as-of", "1")) == (0, 0)
        valid = run_kbak("validate", *lake, "--deep", "--format", "json", env=env)
        assert valid.returncode == 0, valid.stdout


def erase_failing(lake: tuple[str, ...], request: tuple[str, ...], env: dict):
    proc = run_kbak("erase", *lake, *request, env=env)
    assert proc.returncode == 1 and proc.stderr.startswith("kbak: error: ") and proc.stderr.count("\n") == 1, proc
    return proc


@pytest.mark.parametrize("erase_first", [True, False], ids=["erase-then-retention", "retention-then-erase"])
def test_erasure_and_retention_then_vacuum(two_run_lake, tmp_path, erase_first):
    """Whichever comes first, after vacuum no version reads the expired days, nor the erased key."""
    lake = str(tmp_path / "lake")
    shutil.copytree(two_run_lake.lake, lake)
    before = erase_lakes.rows_at(lake, 1)
    assert any(r.key == b"k0" for r in before)  # k0 is on 2024-11-01

    def apply_retention() -> None:
        run_json("retention", "set", "--lake", lake, "--topics", two_run_lake.topic, "--days", "1")
        out = run_json("retention", "apply", "--lake", lake, "--now", "2024-11-04T00:00:00Z")
        assert [p["date"] for p in out["partitions_removed"]] == ["2024-11-01", "2024-11-02"]

    def erase_k0() -> None:
        assert run_json("erase", "--lake", lake, "--request-id", "R", "--reason", "x", "--key", "k0")["records"] == 2

    for step in (erase_k0, apply_retention) if erase_first else (apply_retention, erase_k0):
        step()
    vac = run_json("vacuum", "--lake", lake)
    assert {f["reason"] for f in vac["files_deleted"]} >= {"retention"}
    expired = ("2024-11-01", "2024-11-02")
    kept = [r for r in before if r.key != b"k0" and _day(r) not in expired]
    assert query_rows(lake, tmp_path, "--as-of", "1") == kept
    assert not any(_day(r) in expired for r in query_rows(lake, tmp_path))
    assert not [p for p in Path(lake).rglob("*.parquet") if any(f"date={d}" in str(p) for d in expired)]
    proc = run_kbak("validate", "--lake", lake, "--deep", "--format", "json")
    assert proc.returncode == 0, proc.stdout


def _day(r: Rec) -> str:
    return datetime.fromtimestamp(r.timestamp_ms / 1000, UTC).date().isoformat()


def test_erase_by_field_in_avro_protobuf_and_json_payloads(schema_lake, tmp_path):
    """--json-field matches a field in any payload the kept schemas decode, as field() does in queries."""
    lake = str(tmp_path / "lake")
    shutil.copytree(schema_lake.lake, lake)
    count = f"SELECT count(*) AS n FROM records WHERE field(value, 'customer_id') = '{SCHEMA_CUSTOMER}'"

    def held() -> int:
        proc = run_kbak("query", "--lake", lake, "--sql", count, "-f", "json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)[0]["n"]

    assert held() == 8  # two payments in each of the Avro, Protobuf, JSON Schema and plain JSON topics
    out = run_json("erase", "--lake", lake, "--request-id", "R-S", "--reason", "x", "--json-field",
                   f"customer_id={SCHEMA_CUSTOMER}")  # fmt: skip
    assert out["records"] == 8 and {p["topic"] for p in out["partitions"]} == set(schema_lake.topics.values())
    assert held() == 0
    assert run_kbak("validate", "--lake", lake, "--deep").returncode == 0
