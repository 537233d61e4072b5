"""Custody benchmark: what sealing, list, validate (shallow and deep) and report cost on a real lake.

``make bench BENCH=custody`` (``KBAK_BENCH_CUSTODY_RECORDS``, default 300,000 sample records over 7
days, flushed every ``KBAK_BENCH_CUSTODY_FLUSH`` = 30,000 records) ingests into a local lake from a local
broker, then times each custody operation in this process. Prints one line per measurement.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.core.storage import Lake, S3Settings
from pipeline.custody import manifest
from pipeline.custody.history import describe, history
from pipeline.custody.hold import hold, hold_status, table_objects
from pipeline.custody.report import build_report, chart_png, render_html
from pipeline.custody.validate import validate
from pipeline.dev.sample import produce_sample
from pipeline.dev.servers import LocalBroker, LocalS3
from pipeline.ingest import IngestOptions, ingest


def _timed(label: str, fn, per: tuple[int, str] | None = None):
    start = time.perf_counter()
    out = fn()
    took = time.perf_counter() - start
    rate = f"  ({per[0] / took:,.0f} {per[1]}/s)" if per and took > 0 else ""
    print(f"{label:<44} {took:8.3f} s{rate}", flush=True)
    return out


def main() -> None:
    records = int(os.environ.get("KBAK_BENCH_CUSTODY_RECORDS", "300000"))
    flush = int(os.environ.get("KBAK_BENCH_CUSTODY_FLUSH", "30000"))
    work = Path(tempfile.mkdtemp(prefix="kbak-bench-custody-"))
    try:
        with LocalBroker() as broker, LocalS3() as s3:
            produced = produce_sample(broker.bootstrap, records, days=7, start=datetime(2024, 11, 3, tzinfo=UTC))
            print("-- local lake", flush=True)
            _bench(broker, Lake.at(work / "lake"), produced, flush)
            print("-- S3 lake (moto server, Object Lock bucket)", flush=True)
            s3.create_bucket("bench", object_lock=True)
            settings = S3Settings(s3.endpoint, s3.region, s3.access_key, s3.secret_key)
            lake = Lake.at("s3://bench/lake", settings)
            _bench(broker, lake, produced, flush)
            objects = len(table_objects(lake))
            _timed(f"hold --until (retention on {objects} objects)", lambda: hold(lake, _in_days(30), "GOVERNANCE"))
            _timed("hold --status", lambda: hold_status(lake), (objects, "objects"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _in_days(days: int) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def _bench(broker: LocalBroker, lake: Lake, produced: int, flush: int) -> None:
    opts = IngestOptions(
        broker.bootstrap,
        lake,
        ["payments", "user-activity", "account-state"],
        once=True,
        flush_records=flush,
        group_id=f"bench-{lake.uri}",
    )
    summary = _timed(f"ingest {produced:,} records (flush {flush:,})", lambda: ingest(opts), (produced, "records"))
    files = len(lake.list_files()) - len(lake.list_files("_delta_log")) - len(lake.list_files("_kbak"))
    mb = summary.bytes_written / 1e6
    print(f"lake: {summary.commits} commits, {files} data files, {mb:.1f} MB Parquet", flush=True)
    manifest._SEALED_HEAD.clear()
    _timed("seal, nothing to do, no cache (ingest start)", lambda: manifest.seal(lake))
    _timed("seal, nothing to do, cached (after a commit)", lambda: manifest.seal(lake))
    _timed("list", lambda: history(lake))
    _timed("describe --backup-id", lambda: describe(lake, backup_id=summary.backup_id))
    shallow = _timed("validate (shallow)", lambda: validate(lake))
    deep = _timed("validate --deep", lambda: validate(lake, deep=True), (summary.records, "records"))
    assert shallow.valid and deep.valid, deep.as_dict()
    report = _timed("report --period 2024-11 (json)", lambda: build_report(lake, "2024-11"))
    _timed("report chart + html", lambda: render_html(report, chart_png(report)))


if __name__ == "__main__":
    main()
