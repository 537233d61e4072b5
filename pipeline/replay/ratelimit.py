"""A token bucket over records/s and bytes/s, so a replay does not flood a live target cluster."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """``delay(records, nbytes)`` returns how long to wait before sending that much; None rates are unlimited.

    The bucket holds at most a tenth of a second of credit, so a run never bursts far above its rate.
    """

    def __init__(
        self, records_per_s: float | None, bytes_per_s: float | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rates = [records_per_s, bytes_per_s]
        self.clock = clock
        self.start = clock()
        self.sent = [0.0, 0.0]

    @property
    def active(self) -> bool:
        return any(r is not None for r in self.rates)

    def chunk(self, default: int) -> int:
        """Records to send between checks: about 1/20 s worth at the record rate."""
        r = self.rates[0]
        return default if r is None else max(1, min(default, int(r / 20)))

    def delay(self, records: int, nbytes: int) -> float:
        """Account for ``records``/``nbytes`` and return the seconds to wait before sending them."""
        now = self.clock()
        wait = 0.0
        for i, (rate, amount) in enumerate(zip(self.rates, (records, nbytes), strict=True)):
            if rate is None:
                continue
            # never bank more than 0.1 s of unused credit
            self.sent[i] = max(self.sent[i], (now - self.start - 0.1) * rate)
            self.sent[i] += amount
            wait = max(wait, self.sent[i] / rate - (now - self.start))
        return max(wait, 0.0)
