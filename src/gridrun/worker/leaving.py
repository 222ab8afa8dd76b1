"""A worker that leaves by itself: after a while with nothing to run (`--idle-timeout`),
as an allocation's worker should give its node back (HyperQueue's and Dask-jobqueue's idle
timeouts), and at its time limit (`--time-limit`, an allocation's walltime less a margin:
until then the master sends it only tasks whose timeout ends before it, so what runs then has
ended). It leaves as on SIGTERM: it drains (nothing is running, so at once) and exits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gridrun.worker.slots import Slots

log = logging.getLogger("gridrun.worker")


async def leave_when_idle(
    idle_s: float,
    slots: Slots,
    stop: asyncio.Event,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Set `stop` once nothing has run or been held for `idle_s` seconds on end. Looked at
    several times a period, and by what started since the last look too, so a task shorter
    than the look's interval still counts as work."""
    every = min(1.0, idle_s / 4)
    since, seen = clock(), slots.started
    while not stop.is_set():
        await asyncio.sleep(every)
        if slots.busy() or slots.started != seen:
            since, seen = clock(), slots.started
        elif clock() - since >= idle_s:
            log.info("nothing to run for %gs (--idle-timeout): leaving", idle_s)
            stop.set()
            return


async def leave_at_time_limit(
    deadline: float, stop: asyncio.Event, clock: Callable[[], float] = time.monotonic
) -> None:
    """Set `stop` at `deadline` (on `clock`)."""
    while not stop.is_set():
        left = deadline - clock()
        if left <= 0:
            log.info("the time limit is reached (--time-limit): leaving")
            stop.set()
            return
        await asyncio.sleep(min(left, 1.0))


async def leave_by_itself(
    idle_s: float | None,
    deadline: float | None,
    slots: Slots,
    stop: asyncio.Event,
) -> None:
    """Leave when idle for `idle_s` or at `deadline`, whichever comes first (neither: never)."""
    ways = []
    if idle_s:
        ways.append(leave_when_idle(idle_s, slots, stop))
    if deadline is not None:
        ways.append(leave_at_time_limit(deadline, stop))
    await asyncio.gather(*ways) if ways else await stop.wait()
