"""What the benchmarks measure besides wall time: CPU seconds (user + sys) and peak memory.

On a machine whose cores are shared, wall-clock rates move with everyone else's load; the CPU a
process spent per GB moves much less, so each benchmark prints both.
"""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Usage:
    wall: float = 0.0  # seconds
    cpu: float = 0.0  # user + sys seconds, every thread of the process (and its waited-for children)
    peak_rss: int = 0  # bytes, for child processes only

    def per_gb(self, nbytes: int) -> float:
        """CPU seconds per GB (1e9 bytes) of ``nbytes`` processed."""
        return self.cpu / (nbytes / 1e9) if nbytes else 0.0

    def __iadd__(self, other: Usage) -> Usage:
        self.wall += other.wall
        self.cpu += other.cpu
        self.peak_rss = max(self.peak_rss, other.peak_rss)
        return self


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


@contextmanager
def measured() -> Iterator[Usage]:
    """Wall and CPU time of this process (all its threads, librdkafka's included) over the block."""
    usage = Usage()
    cpu0, t0 = _cpu(resource.RUSAGE_SELF), time.perf_counter()
    try:
        yield usage
    finally:
        usage.wall = time.perf_counter() - t0
        usage.cpu = _cpu(resource.RUSAGE_SELF) - cpu0


def run_process(argv: list[str], env: dict[str, str] | None = None, what: str = "") -> tuple[Usage, str]:
    """Run a command to completion; its wall time, CPU (``wait4``) and peak RSS, and its stderr.

    The peak is the kernel's VmHWM of the process (and, summed, of its direct children, such as
    ``--workers`` processes), sampled until it exits: ``ru_maxrss`` would include this
    benchmark's own memory, inherited across fork.
    """
    usage = Usage()
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
        status = 0
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            usage.peak_rss = max(usage.peak_rss, _tree_hwm(proc.pid))
            time.sleep(0.02)
        usage.wall = time.perf_counter() - t0
        usage.cpu = rusage.ru_utime + rusage.ru_stime
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{what or argv[0]} failed ({proc.returncode}): {stderr.strip()[-2000:]}")
    return usage, stderr


def _hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _tree_hwm(pid: int) -> int:
    """Peak RSS of a process plus that of its direct children (worker processes)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return _hwm(pid) + sum(_hwm(int(c)) for c in children)
