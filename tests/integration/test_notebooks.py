"""Every notebook in ``notebooks/`` runs headless (papermill) against a lake with known contents.

A notebook takes its parameters from the cell tagged ``parameters``; the suite passes the lake and
an output directory (plus the case scope, which every discovery notebook accepts) and fails on any
error a cell raises.
"""

from __future__ import annotations

import json
from pathlib import Path

import papermill
import pyarrow.parquet as pq
import pytest
from support import query_lake

from pipeline.query.discovery import file_sha256

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


@pytest.fixture()
def audit(audit_lake) -> query_lake.AuditLake:
    return audit_lake


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["legal_discovery.ipynb"] or len(NOTEBOOKS) > 1


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_headless(notebook, audit, tmp_path):
    evidence = tmp_path / "evidence"
    executed = tmp_path / notebook.name
    papermill.execute_notebook(
        str(notebook),
        str(executed),
        parameters={
            "lake_uri": audit.uri,
            "out_dir": str(evidence),
            "case_id": "CASE-7",
            "custodians": ["customer-1"],
            "topics": [audit.pay],
            "start": "2024-07-01T00:00:00Z",
            "end": "2024-10-01T00:00:00Z",
        },
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    if notebook.stem != "legal_discovery":
        return
    text = "\n".join(
        "".join(o.get("text", "")) for c in json.loads(executed.read_text())["cells"] for o in c.get("outputs", [])
    )
    # customer-1 in Q3: 0/0, 0/3 (JSON), 0/5 (second ingest), 1/0 (JSON, no key), 1/1 (binary value).
    assert "customer-1: 5 records" in text
    assert "5 records match the case predicate" in text
    assert f"Delta table version {audit.latest_version}" in text

    hold = pq.read_table(evidence / "CASE-7.parquet").to_pylist()
    assert sorted((r["partition"], r["offset"]) for r in hold) == [(0, 0), (0, 3), (0, 5), (1, 0), (1, 1)]
    assert len((evidence / "CASE-7.jsonl").read_text().splitlines()) == 5
    assert (evidence / "matches_per_day.png").stat().st_size > 0
    sums = dict(reversed(line.split("  ")) for line in (evidence / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {"CASE-7.parquet", "CASE-7.jsonl"}
    for name, digest in sums.items():
        assert file_sha256(evidence / name) == digest
        assert f"sha256 {digest}" in text
