"""Parsing the flags several commands share: times (``--from``/``--to``) and Kafka keys (``--key``).

Every parser raises a one-line KbakError naming the flag, so bad input fails before anything runs.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from pipeline.core.errors import KbakError

__all__ = ["parse_key", "parse_time"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_time(text: str | int | None, flag: str, end: bool = False) -> int | None:
    """Epoch milliseconds or ISO-8601 (naive means UTC) to epoch ms.

    A date alone means the start of that day, or its last millisecond when it ends a window
    (``end``), so ``--from 2024-07-01 --to 2024-09-30`` is the whole third quarter.
    """
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return text
    s = str(text).strip()
    if re.fullmatch(r"-?\d+", s):
        return int(s)
    try:
        if _ISO_DATE.match(s):
            day = date.fromisoformat(s)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            stamp = start + timedelta(days=1) - timedelta(milliseconds=1) if end else start
        else:
            stamp = datetime.fromisoformat(s.replace("z", "Z"))
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
    except ValueError:
        raise KbakError(f"{flag} {s!r} is neither epoch milliseconds nor an ISO-8601 time") from None
    return (stamp - _EPOCH) // timedelta(milliseconds=1)


def parse_key(text: str | None) -> bytes | None:
    """``--key``: UTF-8 text, or ``hex:`` followed by the key's bytes in hex."""
    if text is None:
        return None
    if text.startswith("hex:"):
        try:
            return bytes.fromhex(text[4:])
        except ValueError:
            raise KbakError(f"--key {text!r} is not valid hex after 'hex:'") from None
    return text.encode()
