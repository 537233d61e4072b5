"""``make demo``: the main job end to end on embedded defaults.

Starts a local Kafka-compatible broker, produces a realistic sample of audit data (keys, JSON
values, headers with duplicates and nulls, tombstones, empty values, five days of timestamps),
archives it into a local lake with ``kbak ingest --once``, and prints what landed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from pipeline.core.progress import reporter_for_terminal
from pipeline.core.storage import Lake
from pipeline.custody.validate import validate
from pipeline.dev.sample import produce_sample
from pipeline.dev.servers import LocalBroker
from pipeline.ingest import IngestOptions, ingest
from pipeline.query.engine import connect

LAKE = Path("demo-lake")


def main() -> int:
    if LAKE.exists():
        shutil.rmtree(LAKE)  # the demo broker is new every run, so the demo lake is too
    with LocalBroker() as broker:
        print(f"local broker on {broker.bootstrap}")
        produced = produce_sample(broker.bootstrap, records=5000, days=5)
        print(f"produced {produced} sample records to payments, user-activity, account-state")
        lake = Lake.at(LAKE)
        summary = ingest(
            IngestOptions(broker.bootstrap, lake, topics=[".*"], once=True, source_cluster_id="demo-cluster"),
            reporter=reporter_for_terminal(),
        )
    print(
        f"\narchived {summary.records} records in {summary.commits} commit(s) to {lake.uri} "
        f"({summary.bytes_written / 1e3:.1f} kB of zstd Parquet) in {summary.duration_s:.1f}s\n"
    )
    con = connect(lake)
    print("what landed (per topic and partition):")
    rows = con.execute(
        """
        SELECT topic, "partition", count(*) AS records, min("offset") AS first_offset, max("offset") AS last_offset,
               min(date) AS first_day, max(date) AS last_day,
               count(*) FILTER (WHERE value IS NULL) AS tombstones, count(*) FILTER (WHERE key IS NULL) AS no_key
        FROM records GROUP BY ALL ORDER BY ALL
        """
    ).fetchall()
    print(f"  {'topic':<14}{'part':>5}{'records':>9}{'offsets':>14}{'days':>25}{'tombstones':>12}{'no key':>8}")
    for t, p, n, lo, hi, d0, d1, tomb, nokey in rows:
        print(f"  {t:<14}{p:>5}{n:>9}{f'{lo}..{hi}':>14}{f'{d0}..{d1}':>25}{tomb:>12}{nokey:>8}")
    print("\na sample record, as archived:")
    key, value, headers, ts = con.execute(
        "SELECT key, value, headers, timestamp FROM records WHERE topic = 'payments' ORDER BY \"offset\" LIMIT 1"
    ).fetchone()
    print(f"  timestamp {ts}\n  key       {bytes(key)!r}\n  value     {bytes(value).decode()}")
    print(f"  headers   {[(h['key'], h['value'] and bytes(h['value'])) for h in headers]}")
    report = validate(lake, deep=True)
    verdict = "VALID" if report.valid else f"INVALID ({len(report.errors)} errors)"
    print(f"\ncustody: {report.versions} versions sealed; kbak validate --deep: {verdict}")
    if report.head:
        print(f"  chain head: version {report.head['version']}, manifest sha256 {report.head['manifest_sha256']}")
    print(f"\ntry: .venv/bin/kbak query --list, kbak list --lake {LAKE}, kbak replay --help")
    return 0


if __name__ == "__main__":
    sys.exit(main())
