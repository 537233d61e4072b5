"""``kbak validate`` and ``kbak list`` from the verified point: only what is new is re-read; ``--full`` reads all."""

from __future__ import annotations

import json
import shutil

from support.custody_lakes import NOV_1_2024_MS, ingest, records
from support.kbak_testing import produce, run_kbak

from pipeline.custody.manifest import manifest_path


def _validate(lake, *extra: str) -> dict:
    proc = run_kbak("validate", "--lake", str(lake), "--format", "json", *extra)
    return json.loads(proc.stdout) | {"exit": proc.returncode}


def _list(lake) -> dict:
    out = json.loads(run_kbak("list", "--lake", str(lake), "--format", "json").stdout)
    out.pop("verified_point", None)
    return out


def test_validate_and_list_start_at_the_verified_point(kafka, two_run_lake, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(two_run_lake.lake, lake)
    first = _validate(lake)
    assert first["exit"] == 0 and first["verified_from"] is None  # no point yet: everything
    assert (lake / "_kbak" / "verified.json").exists()

    produce(kafka.bootstrap, records(two_run_lake.topic, 12, NOV_1_2024_MS + 6 * 86_400_000, 60_000, tag="x"))
    ingest(kafka, two_run_lake.topic, str(lake), "--flush-records", "4")
    later = _validate(lake)
    assert later["exit"] == 0 and later["verified_from"] == first["head"]["version"]
    assert later["head"]["version"] > first["head"]["version"]
    assert later["records"] == first["records"] + 12 and later["files"] > first["files"]

    # A retention and a case hold after the point: coverage subtracts the removal, cases are checked.
    L = ("--lake", str(lake))
    assert run_kbak("retention", "set", *L, "--topics", two_run_lake.topic, "--days", "3").returncode == 0
    assert run_kbak("hold", *L, "--case", "C-1", "--topics", two_run_lake.topic, "--from", "2024-11-02",
                    "--to", "2024-11-02").returncode == 0  # fmt: skip
    assert run_kbak("retention", "apply", *L, "--now", "2024-11-08T00:00:00Z").returncode == 0
    again = _validate(lake)
    assert again["exit"] == 0 and again["verified_from"] == later["head"]["version"], again["errors"]
    from_point = json.loads(run_kbak("list", "--lake", str(lake), "--format", "json").stdout)
    assert from_point["verified_point"] == again["head"]["version"]
    from_point.pop("verified_point")
    (lake / "_kbak" / "verified.json").unlink()
    assert from_point == _list(lake)  # the same history as from the whole chain


def test_full_checks_what_a_point_vouches_for_and_a_broken_point_is_not_trusted(two_run_lake, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(two_run_lake.lake, lake)
    assert _validate(lake)["exit"] == 0  # the point is now the head (version 2)
    # Rewrite version 1's manifest: a plain validate starts after it, --full re-checks it.
    m1 = lake / manifest_path(1)
    doc = json.loads(m1.read_text())
    doc["body"]["created_by"] = "mallory"
    m1.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")))
    assert _validate(lake)["verified_from"] == 2
    full = _validate(lake, "--full")
    assert full["exit"] == 1 and full["verified_from"] is None
    assert {e["check"] for e in full["errors"]} >= {"manifest-body-digest", "chain-link"}
    # Rewrite the point's own manifest: the point no longer holds, everything is checked.
    m2 = lake / manifest_path(2)
    doc = json.loads(m2.read_text())
    doc["body"]["created_by"] = "mallory"
    m2.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")))
    broken = _validate(lake)
    assert broken["exit"] == 1 and broken["verified_from"] is None
    # And a hand-edited point is ignored.
    point = lake / "_kbak" / "verified.json"
    point.write_text(point.read_text().replace('"version":2', '"version":1'))
    assert _validate(lake)["verified_from"] is None
