"""What a person sees while ingest or replay runs: a live display on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.table import Table


@dataclass
class Snapshot:
    """Counters a long-running job reports; ``lag`` is per topic."""

    label: str
    records: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    lag: dict[str, int] = field(default_factory=dict)

    @property
    def elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)

    def line(self) -> str:
        rate = self.records / self.elapsed
        lag = ", ".join(f"{t} lag {n}" for t, n in sorted(self.lag.items()))
        text = f"{self.label}: {self.records} records, {self.bytes / 1e6:.1f} MB, {rate:,.0f} records/s"
        return f"{text}; {lag}" if lag else text


class Reporter:
    """Base reporter: silent. Used by the Python API unless a caller asks for output."""

    def update(self, snap: Snapshot) -> None:  # noqa: B027 - intentionally empty
        pass

    def close(self) -> None:  # noqa: B027
        pass

    def warn(self, text: str) -> None:  # noqa: B027 - the API returns warnings in its summary instead
        pass


class WarningReporter(Reporter):
    """No progress, but warnings as ``kbak: warning: ...`` lines on stderr (``--quiet``, ``--json``)."""

    def warn(self, text: str) -> None:
        print(f"kbak: warning: {text}", file=sys.stderr, flush=True)


class LogReporter(WarningReporter):
    """Plain lines on stderr every ``every`` seconds (for logs, CI, pipes)."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self._last = 0.0
        self._unprinted: str | None = None

    def update(self, snap: Snapshot) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._unprinted = None
            print(snap.line(), file=sys.stderr, flush=True)
        else:
            self._unprinted = snap.line()

    def close(self) -> None:
        # The last state, so the final line is not a stale one from up to ``every`` seconds before.
        if self._unprinted is not None:
            print(self._unprinted, file=sys.stderr, flush=True)
            self._unprinted = None


class LiveReporter(WarningReporter):
    """A rich live table on a terminal."""

    def __init__(self) -> None:
        self._live = Live(console=Console(stderr=True), refresh_per_second=4, transient=True)
        self._live.start()

    def update(self, snap: Snapshot) -> None:
        table = Table(title=snap.label, show_edge=False)
        for col in ("records", "MB", "records/s", "elapsed"):
            table.add_column(col, justify="right")
        table.add_row(
            f"{snap.records:,}",
            f"{snap.bytes / 1e6:,.1f}",
            f"{snap.records / snap.elapsed:,.0f}",
            f"{snap.elapsed:,.1f}s",
        )
        if snap.lag:
            lag = Table(show_edge=False)
            lag.add_column("topic")
            lag.add_column("lag", justify="right")
            for topic, n in sorted(snap.lag.items()):
                lag.add_row(topic, f"{n:,}")
            grid = Table.grid()
            grid.add_row(table)
            grid.add_row(lag)
            self._live.update(grid)
        else:
            self._live.update(table)

    def close(self) -> None:
        self._live.stop()


def plural(n: int, word: str) -> str:
    """``1 topic``, ``2 topics``."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def reporter_for_terminal(quiet: bool = False) -> Reporter:
    if quiet:
        return WarningReporter()
    return LiveReporter() if sys.stderr.isatty() else LogReporter()
