"""Sealing across many commits of one process (the cached path) yields the same chain validate recomputes."""

from __future__ import annotations

from support.custody_lakes import record_rows

from pipeline.core.storage import Lake
from pipeline.custody import manifest
from pipeline.custody.history import history
from pipeline.custody.validate import validate
from pipeline.ingest.commit import commit_records, ensure_table

rows = record_rows


def test_many_commits_in_one_process_chain_and_validate(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    dt = ensure_table(lake)
    last = None
    for i in range(12):  # crosses a checkpoint (interval 10)
        res = commit_records(lake, dt, rows("t", 0, i * 5, 5), {("t", 0): last}, source_cluster="c", backup_id="run-1")
        assert res.version == i + 1
        last = res.committed[("t", 0)]
    assert manifest._SEALED_HEAD[lake.uri][0] == 12
    assert manifest.sealed_versions(lake) == list(range(13))
    assert not lake.list_files(manifest.STAGED_DIR)
    (cp,) = checkpoints(lake)  # delta-rs writes one every 10 versions (delta.checkpointInterval)
    assert manifest.read_manifest(lake, cp)["checkpoint_sha256"] == manifest.sha256_hex(
        lake.read_bytes(manifest.checkpoint_path(cp))
    )

    report = validate(lake, deep=True)
    assert report.valid and report.findings == [] and report.records == 60 and report.files == 12
    (run,) = [r for r in history(lake)["runs"] if r["backup_id"] == "run-1"]
    assert (run["first_version"], run["last_version"], run["commits"], run["records"]) == (1, 12, 12, 60)

    # A fresh process (no cache) seals nothing more and re-derives the same head.
    head = manifest._SEALED_HEAD.pop(lake.uri)
    assert manifest.seal(lake) == []
    assert manifest._SEALED_HEAD[lake.uri] == head


def test_edited_checkpoint_is_caught(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    dt = ensure_table(lake)
    last = None
    for i in range(10):
        last = commit_records(lake, dt, rows("t", 1, i, 1), {("t", 1): last}, source_cluster="c", backup_id="r")
        last = last.committed[("t", 1)]
    (cp,) = checkpoints(lake)
    path = tmp_path / "lake" / manifest.checkpoint_path(cp)
    path.write_bytes(path.read_bytes() + b"\0")
    report = validate(lake)
    errors = {(f.check, f.subject) for f in report.errors}
    assert ("checkpoint-digest", manifest.checkpoint_path(cp)) in errors
    assert errors <= {("checkpoint-digest", manifest.checkpoint_path(cp)), ("delta-log-readable", "_delta_log")}


def checkpoints(lake: Lake) -> list[int]:
    return [int(p.split("/")[-1][:20]) for p in lake.list_files("_delta_log") if p.endswith(".checkpoint.parquet")]


def test_an_operation_whose_sealing_fails_after_its_commit_is_never_committed_twice(tmp_path, monkeypatch):
    """A storage error after the commit landed (sealing, a post-commit hook) must not re-run the commit."""
    from deltalake import DeltaTable

    from pipeline.custody import operation

    lake = Lake.at(tmp_path / "lake")
    dt = ensure_table(lake)
    before = dt.version()

    def failing_seal(*args, **kwargs):
        raise OSError("connection reset while sealing")

    monkeypatch.setattr(operation, "seal", failing_seal)
    try:
        operation.commit_operation(lake, dt, "case-hold", {"case": "C-1"}, sleep=lambda s: None)
    except OSError as exc:
        assert "sealing" in str(exc)
    else:
        raise AssertionError("the sealing error must reach the caller")
    assert DeltaTable(lake.uri).version() == before + 1  # one commit, not one per retry
    monkeypatch.undo()
    assert manifest.seal(lake) == [before + 1]  # sealed later, as the next commit or validate --repair does


def test_an_ingest_commit_whose_sealing_fails_once_reports_its_records_committed(tmp_path, monkeypatch):
    """Retrying after a storage error that came once the commit had landed must not call the rows rejected."""
    from deltalake import DeltaTable

    from pipeline.ingest import commit as ingest_commit

    lake = Lake.at(tmp_path / "lake")
    dt = ensure_table(lake)
    real_seal, calls = manifest.seal, []

    def flaky_seal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("connection reset while sealing")
        return real_seal(*args, **kwargs)

    monkeypatch.setattr(ingest_commit.custody, "seal", flaky_seal)
    res = commit_records(lake, dt, rows("t", 0, 0, 5), {("t", 0): None}, source_cluster="c", backup_id="r",
                         sleep=lambda s: None)  # fmt: skip
    assert (res.version, res.records, res.committed, res.rejected) == (1, 5, {("t", 0): 4}, {})
    assert DeltaTable(lake.uri).version() == 1 and manifest.sealed_versions(lake) == [0, 1]
