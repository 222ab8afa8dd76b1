"""Dispatch always progresses: however many lanes (kinds of task) nothing can take stand in
front, runnable tasks behind them start as soon as slots are free, without another event to
wake dispatch. A pass reads a bounded number of lanes; the next pass must go on from there."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gridrun.master.core.dispatcher import LANES_PER_PASS
from tests import pg
from tests.integration.conftest import Grid

pytestmark = [pytest.mark.slow]

BLOCKED_LANES = 10_000
RUNNABLE = 12


def blocked(kind: str, i: int) -> dict[str, Any]:
    """A task of a lane of its own that no worker of this test can take; every such lane sorts
    before the runnable tasks' lane (lanes are read in key order: owner, queue, labels, ...)."""
    if kind == "labels":
        return {"argv": ["true"], "labels": {"need": f"a{i:05d}"}}
    if kind == "queues":  # runnable by its labels, held by its queue's quota of 0 running
        return {"argv": ["true"], "queue": f"a{i:05d}", "labels": {"need": "zzz"}}
    return {"argv": ["true"], "labels": {"need": "zzz"}, "memory_mb": 1_000_000 + i}


def runnable(kind: str) -> dict[str, Any]:
    return {"argv": ["true"], "labels": {"need": "zzz"}, "queue": "zz-runs"}


async def lanes_then_runnable(grid: Grid, kind: str) -> None:
    assert BLOCKED_LANES > 5 * LANES_PER_PASS  # several passes' worth of lanes in front
    if kind == "queues":
        for i in range(BLOCKED_LANES):
            response = await grid.api.put(f"/v1/quotas/queue/a{i:05d}", json={"max_running": 0})
            assert response.status_code == 200, response.text
    for start in range(0, BLOCKED_LANES, 1000):
        await grid.submit_many([blocked(kind, i) for i in range(start, start + 1000)])
    await grid.add_worker("w1", slots=4, labels={"need": "zzz"})
    await asyncio.sleep(1.0)  # dispatch has looked, and found nothing it can run
    started = time.monotonic()
    tasks = await grid.submit_many([runnable(kind) for _ in range(RUNNABLE)])
    for t in tasks:
        done = await grid.wait(t["id"], timeout=30)
        assert done["state"] == "succeeded", done
    took = time.monotonic() - started
    assert took < 20, f"{RUNNABLE} runnable tasks behind {BLOCKED_LANES} lanes took {took:.1f}s"


@pytest.mark.parametrize("kind", ["labels", "queues", "resources"])
async def test_runnable_tasks_start_behind_ten_thousand_lanes_no_worker_takes_sqlite(
    grid: Grid, kind: str
) -> None:
    await lanes_then_runnable(grid, kind)


@pytest.fixture
async def pg_grid(tmp_path: Path) -> AsyncIterator[Grid]:
    async with pg.database() as url:
        g = Grid(tmp=tmp_path, master_overrides={"db": url})
        try:
            await g.start_master()
            yield g
        finally:
            await g.close()


@pytest.mark.pg
async def test_runnable_tasks_start_behind_ten_thousand_lanes_no_worker_takes_postgres(
    pg_grid: Grid,
) -> None:
    await lanes_then_runnable(pg_grid, "labels")
