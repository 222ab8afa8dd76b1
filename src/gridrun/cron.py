"""Cron expressions for schedules (croniter), in UTC: validating them and finding the next slot.

Pure functions over epoch milliseconds, so a test's clock decides what "now" is.
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from gridrun.errors import InvalidSpec

MAX_CRON_BYTES = 256


def check(expr: str) -> str:
    """The expression, if it is five fields (minute hour day-of-month month day-of-week)
    croniter accepts and that fires at some time; else InvalidSpec. A sixth field (seconds)
    is refused: a schedule firing every second is a queue no quota was meant to meet, and
    the master fires schedules once per liveness period anyway."""
    expr = " ".join(expr.split())
    if not expr or len(expr) > MAX_CRON_BYTES:
        raise InvalidSpec(f"cron must be a cron expression of at most {MAX_CRON_BYTES} bytes")
    if len(expr.split(" ")) != 5 and not expr.startswith("@"):
        raise InvalidSpec(
            f"cron {expr!r}: give five fields, minute hour day-of-month month day-of-week"
            " (UTC), e.g. '*/5 * * * *'"
        )
    try:
        croniter(expr).get_next(float)
    except CroniterBadDateError:
        raise InvalidSpec(f"cron {expr!r} never fires (no such date)") from None
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise InvalidSpec(f"cron {expr!r} is not a valid cron expression: {exc}") from None
    return expr


def next_slot(expr: str, after_ms: int) -> int:
    """The first time the expression fires strictly after `after_ms` (epoch ms, UTC)."""
    start = datetime.fromtimestamp(after_ms / 1000, tz=UTC)
    return round(croniter(expr, start).get_next(float) * 1000)
