"""Erasure benchmark: ``kbak erase`` of one customer on the query benchmark's 5.4M-record lake.

The lake is the query bench's (``pipeline.dev.bench.query.build_lake``, cached under ``$KBAK_BENCH_DIR``),
copied first because erasure changes it. The subject is one of 5,000 customers: its key in ``payments``
and its ``customer_id`` in ``account-state`` values, on every one of the 90 days, so nearly every file
holds some of its ~1,000 records and is rewritten (file pruning by topic only; keys and values have no
statistics, by design). Timed: the real CLI, process start included, plus a ``--dry-run`` (the scan alone).

Knobs (env): KBAK_BENCH_QUERY_RECORDS (default 5_400_000), KBAK_BENCH_DIR.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pipeline.dev.bench.query import CUSTOMER, KBAK, build_lake

GOAL_S = 10.0


def _erase(lake: Path, *extra: str) -> tuple[float, float, dict]:
    """(wall seconds, CPU seconds of the process, its JSON output): on a shared machine both matter."""
    args = [KBAK, "erase", "--lake", str(lake), "--request-id", "BENCH-1", "--reason", "benchmark",
            "--key", CUSTOMER, "--json-field", f"customer_id={CUSTOMER}", "--json", *extra]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(proc.stdout)


def main() -> None:
    records = int(os.environ.get("KBAK_BENCH_QUERY_RECORDS", 5_400_000))
    base = Path(os.environ.get("KBAK_BENCH_DIR") or Path(tempfile.gettempdir()) / "kbak-bench")
    source = build_lake(base / f"query-lake-{records}", records)
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        lake = Path(tmp) / "lake"
        shutil.copytree(source.uri, lake)
        dry_s, dry_cpu, dry = _erase(lake, "--dry-run")
        print(f"dry run (scan only): {dry['records']} records in {dry['files_scanned']} files scanned, "
              f"{dry['files_to_rewrite']} to rewrite: {dry_s:.2f}s ({dry_cpu:.2f} CPU s)", flush=True)  # fmt: skip
        erase_s, erase_cpu, out = _erase(lake)
        files = out["files_to_rewrite"]
        print(f"kbak erase {CUSTOMER}: {out['records']} records, {files['current']} files rewritten, "
              f"version {out['version']}: {erase_s:.2f}s ({erase_cpu:.2f} CPU s; process start included; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", flush=True)  # fmt: skip
        verify = subprocess.run(
            [KBAK, "query", "--lake", str(lake), "--sql",
             f"SELECT count(*) AS n FROM records WHERE key = '{CUSTOMER}'::BLOB "
             f"OR json_field(value, 'customer_id') = '{CUSTOMER}'", "-f", "json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        left = json.loads(verify.stdout)[0]["n"]
        verdict = "ok" if erase_s < GOAL_S and left == 0 and out["records"] == dry["records"] else "GOAL MISSED"
        print(f"erasure time {erase_s:.2f}s (goal < {GOAL_S:.0f}s), {left} of the subject's records left: {verdict}")
