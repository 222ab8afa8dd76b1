"""Time as a seam: `Clock` is injected so tests can control it; `SystemClock` is the real one."""

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
