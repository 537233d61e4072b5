"""The one way kbak writes a time: ISO-8601 UTC with milliseconds and a ``Z`` (``2024-07-01T00:00:00.000Z``).

The one way it reads one is ``pipeline.core.parsing.parse_time`` (epoch ms, a bare date, ISO-8601 with
``T`` or a space; naive means UTC), used by every flag that takes a time (``--from``, ``--to``, ``--as-of``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms(ms: int | None) -> str | None:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds and ``Z``; None stays None."""
    if ms is None:
        return None
    return (EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    """The current time in kbak's format."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
