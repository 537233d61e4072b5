"""The one way kbak reads a time from the user and the one way it writes one.

Read: epoch milliseconds, a bare date (``2024-07-01``), or ISO-8601 with ``T`` or a space between date
and time, optional fraction and offset (naive means UTC). Every flag that takes a time (``--from``,
``--to``, ``--as-of``) goes through ``parse_time``, so they accept the same things.
Written: ISO-8601 UTC with milliseconds and a ``Z`` (``2024-07-01T00:00:00.000Z``).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from pipeline.core.errors import KbakError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MS = re.compile(r"^-?\d+$")


def parse_time(text: str | int | None, flag: str, end: bool = False) -> int | None:
    """Epoch milliseconds or ISO-8601 to epoch ms; None for no value.

    A date alone means the start of that day, or its last millisecond when it ends a window
    (``end``), so ``--from 2024-07-01 --to 2024-09-30`` is the whole third quarter.
    """
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return text
    s = str(text).strip()
    if _MS.fullmatch(s):
        return int(s)
    try:
        if _DATE.match(s):
            day = date.fromisoformat(s)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            stamp = start + timedelta(days=1) - timedelta(milliseconds=1) if end else start
        else:
            stamp = datetime.fromisoformat(s.replace("z", "Z"))
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
    except ValueError:
        raise KbakError(f"{flag} {s!r} is neither epoch milliseconds nor an ISO-8601 time") from None
    return (stamp - EPOCH) // timedelta(milliseconds=1)


def iso_ms(ms: int | None) -> str | None:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds and ``Z``; None stays None."""
    if ms is None:
        return None
    return (EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    """The current time in kbak's format."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
