"""Checkpoint bench: what tombstones cost each checkpoint, and what vacuum's checkpoint pruning saves.

Builds a lake of ``KBAK_BENCH_CHECKPOINT_VERSIONS`` versions (default 3,000) through kbak's commit path
(``aging.build``: one small file per commit, as continuous ingest makes them) and compacts it. Then, on
two copies, 100 more commits each: one with the compacted files' tombstones inside Delta's window (as
during the first week), one with the window passed (set to one second: the week cannot pass in a
bench). Last, ``vacuum`` on a copy two days on: checkpoint storage and time-travel opens before and after.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from deltalake import DeltaTable

from pipeline.core.storage import Lake
from pipeline.dev.bench.aging import _commit_many, _mb, _mean_ms, build, checkpoint_files, open_ms
from pipeline.lifecycle.compact import compact
from pipeline.lifecycle.vacuum import vacuum


def tombstones(base: Path, state: dict, work: Path) -> None:
    for label, window in (("inside Delta's window", None), ("past it", "interval 1 seconds")):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(base, work)
        if window:
            DeltaTable(str(work)).alter.set_table_properties({"delta.deletedFileRetentionDuration": window})
            time.sleep(2)
        before = set(checkpoint_files(work))
        dt = DeltaTable(str(work))
        times = _commit_many(Lake.at(work), dt, dt.version(), 100, copy.deepcopy(state))
        sizes = [p.stat().st_size for p in checkpoint_files(work) if p not in before]
        wall, cpu = _mean_ms(times)
        print(
            f"  tombstones {label}: 100 commits {wall:.1f} ms each (CPU {cpu:.1f} ms), "
            f"{len(sizes)} checkpoints of {sum(sizes) / max(1, len(sizes)) / 1e3:.0f} kB",
            flush=True,
        )


def pruning(base: Path, work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work)
    newest = DeltaTable(str(work)).version()
    probes = [v for v in (998, newest // 2, newest - 2) if 0 < v < newest]

    def line(label: str) -> None:
        cps = checkpoint_files(work)
        opens = ", ".join(f"as of {v:,} {open_ms(work, v, runs=5):.0f} ms" for v in probes)
        latest = open_ms(work, None, runs=5)
        print(f"  {label}: {len(cps)} checkpoints, {_mb(cps):.1f} MB; open latest {latest:.0f} ms, {opens}")

    line("before vacuum")
    t0 = time.perf_counter()
    out = vacuum(Lake.at(work), now=datetime.now(UTC) + timedelta(days=2))
    print(f"  vacuum: {len(out['checkpoints_deleted'])} checkpoints deleted in {time.perf_counter() - t0:.1f} s")
    line("after vacuum")


def main() -> None:
    versions = int(os.environ.get("KBAK_BENCH_CHECKPOINT_VERSIONS", "3000"))
    root = Path(tempfile.mkdtemp(dir=os.environ.get("KBAK_BENCH_DIR"), prefix="kbak-bench-checkpoints-"))
    base, work = root / "lake", root / "work"
    print(f"building {versions:,} versions at {base}", flush=True)
    lake, state, _ = build(base, versions)
    t0 = time.perf_counter()
    compact(lake)
    print(f"  compacted in {time.perf_counter() - t0:.1f} s", flush=True)
    tombstones(base, state, work)
    pruning(base, work)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
