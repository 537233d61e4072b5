"""Where a run's time goes, stage by stage: ``KBAK_PROFILE=1`` (``make bench BENCH=ingest PROFILE=1``).

Each stage adds up its wall time and the CPU time of the thread that ran it (``time.thread_time``:
what a busy shared machine disturbs least), per thread, so the consume thread and the committer
can be told apart; ``report()`` also gives the whole process's CPU, whose remainder is the threads
kbak does not time itself (librdkafka's fetchers, the interpreter starting). Off, ``stage`` costs a
function call: it wraps work done once per batch or per file, never per record.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

ENABLED = os.environ.get("KBAK_PROFILE", "") not in ("", "0")

_lock = threading.Lock()
_stages: dict[tuple[str, str], list[float]] = {}  # (thread, stage) -> [calls, wall, cpu, records]


@contextmanager
def stage(name: str, records: int = 0) -> Iterator[None]:
    """Time the block as stage ``name`` (``records`` it handled, for a per-record figure)."""
    if not ENABLED:
        yield
        return
    wall, cpu = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        add(name, time.perf_counter() - wall, time.thread_time() - cpu, records)


def add(name: str, wall: float, cpu: float, records: int = 0) -> None:
    key = (threading.current_thread().name, name)
    with _lock:
        row = _stages.setdefault(key, [0, 0.0, 0.0, 0])
        row[0] += 1
        row[1] += wall
        row[2] += cpu
        row[3] += records


def reset() -> None:
    with _lock:
        _stages.clear()


def report(records: int) -> str:
    """The stage table: per thread and stage, calls, wall s, CPU s and CPU µs per record."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    process = usage.ru_utime + usage.ru_stime
    lines = [f"{'thread':16s} {'stage':18s} {'calls':>7s} {'wall s':>8s} {'CPU s':>8s} {'CPU us/rec':>10s}"]
    timed = 0.0
    with _lock:
        rows = sorted(_stages.items())
    for (thread, name), (calls, wall, cpu, _n) in rows:
        timed += cpu
        per = f"{cpu / records * 1e6:10.2f}" if records else f"{'':10s}"
        lines.append(f"{thread[:16]:16s} {name:18s} {calls:7d} {wall:8.2f} {cpu:8.2f} {per}")
    rest = process - timed
    for label, cpu in (("(not staged)", rest), ("(whole process)", process)):
        per = f"{cpu / records * 1e6:10.2f}" if records else f"{'':10s}"
        lines.append(f"{'':16s} {label:18s} {'':7s} {'':8s} {cpu:8.2f} {per}")
    return "\n".join(lines)
