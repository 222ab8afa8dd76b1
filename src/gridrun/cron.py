"""Cron expressions for schedules (croniter), in UTC: validating them and finding the next slot.

Pure functions over epoch milliseconds, so a test's clock decides what "now" is.
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from gridrun.errors import InvalidSpec

MAX_CRON_BYTES = 256


def check(expr: str) -> str:
    """The expression, if croniter accepts it (5 fields, or 6 with seconds); else InvalidSpec."""
    expr = " ".join(expr.split())
    if not expr or len(expr) > MAX_CRON_BYTES:
        raise InvalidSpec(f"cron must be a cron expression of at most {MAX_CRON_BYTES} bytes")
    try:
        croniter(expr)
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as exc:
        raise InvalidSpec(f"cron {expr!r} is not a valid cron expression: {exc}") from None
    return expr


def next_slot(expr: str, after_ms: int) -> int:
    """The first time the expression fires strictly after `after_ms` (epoch ms, UTC)."""
    start = datetime.fromtimestamp(after_ms / 1000, tz=UTC)
    return round(croniter(expr, start).get_next(float) * 1000)
