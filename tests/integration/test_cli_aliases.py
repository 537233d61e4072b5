"""Old spellings still work as hidden aliases, and --json means JSON on every reporting command."""

from __future__ import annotations

import json

from support.kbak_testing import run_kbak


def test_old_short_flags_still_work(audit_lake, two_run_lake):
    lake = str(two_run_lake.lake)
    by_v = run_kbak("describe", "--lake", lake, "-v", "1", "--json")
    by_version = run_kbak("describe", "--lake", lake, "--version", "1", "--format", "json")
    assert by_v.returncode == 0 and json.loads(by_v.stdout) == json.loads(by_version.stdout)

    old = run_kbak("replay", "--lake", audit_lake.uri, "-t", audit_lake.pay, "-p", "0", "--dry-run", "--json")
    new = run_kbak(
        "replay", "--lake", audit_lake.uri, "--topic", audit_lake.pay, "--partition", "0", "--dry-run", "--json"
    )
    assert old.returncode == 0, old.stderr
    plan = json.loads(old.stdout)
    assert plan["records"] == json.loads(new.stdout)["records"] > 0
    assert {(p["topic"], p["partition"]) for p in plan["plan"]} == {(audit_lake.pay, 0)}


def test_json_on_every_reporting_command(two_run_lake):
    lake = str(two_run_lake.lake)
    assert json.loads(run_kbak("list", "--lake", lake, "--json").stdout)["runs"]
    assert json.loads(run_kbak("validate", "--lake", lake, "--json").stdout)["valid"] is True
    assert json.loads(run_kbak("report", "--lake", lake, "--period", "2024-11", "--json").stdout)["period"]
    rows = json.loads(run_kbak("query", "--lake", lake, "--sql", "SELECT count(*) AS n FROM records", "--json").stdout)
    assert rows == [{"n": 90}]
