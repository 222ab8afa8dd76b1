"""Time as a seam: `Clock` is injected so tests can control it; `SystemClock` is the real one,
`ShiftedClock` a wall clock that tests and benches move forward."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock time in epoch milliseconds (stored, shown to users)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (timeouts, liveness)."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


class ShiftedClock:
    """A wall clock moved forward by hand (schedules, expiry, retention); monotonic time stays
    real, so timeouts and liveness behave as usual."""

    def __init__(self, start_ms: int) -> None:
        self._offset_ms = start_ms - time.time_ns() // 1_000_000

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self._offset_ms

    def monotonic(self) -> float:
        return time.monotonic()

    def advance_to(self, when_ms: int) -> None:
        self._offset_ms += when_ms - self.now_ms()
