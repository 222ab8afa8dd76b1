"""Graceful drain: take nothing new, finish what runs, deliver results, exit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers import eventually_async
from tests.integration.conftest import Grid

pytestmark = pytest.mark.timeout(60)


async def _worker_state(grid: Grid, worker_id: str) -> str:
    workers = (await grid.api.get("/v1/workers")).json()["workers"]
    return str(next(w["state"] for w in workers if w["id"] == worker_id))


async def test_drain_through_the_api_finishes_running_work_and_takes_nothing_new(
    grid: Grid, tmp_path: Path
) -> None:
    await grid.add_worker("leaving", slots=2)
    await grid.add_worker("staying", slots=2)
    gate, started = tmp_path / "gate", tmp_path / "started"
    long = await grid.submit(
        cmd=f"touch {started}; while [ ! -e {gate} ]; do sleep 0.01; done; echo finished",
        shell=True,
        labels={},
    )
    await eventually_async(started.exists)
    holder = (await grid.task(long["id"]))["worker_id"]
    response = await grid.api.post(f"/v1/workers/{holder}/drain")
    assert response.status_code == 202
    assert response.json()["state"] == "draining"
    assert await _worker_state(grid, holder) == "draining"
    # new work goes elsewhere while it drains
    others = await grid.submit_many([{"cmd": "true"}] * 6)
    for task in others:
        done = await grid.wait(task["id"])
        assert done["worker_id"] != holder
    gate.touch()
    done = await grid.wait(long["id"])
    assert done["state"] == "succeeded"  # allowed to finish, not killed
    assert (await grid.output(long["id"]))["stdout"]["text"] == "finished\n"
    running = next(r for r in grid.agents if r.agent.id == holder)
    await asyncio.wait_for(running.task, 15)  # and then it exits by itself
    grid.agents.remove(running)
    await eventually_async(lambda: _offline(grid, holder), 15)


async def _offline(grid: Grid, worker_id: str) -> bool:
    return await _worker_state(grid, worker_id) == "offline"


async def test_stopping_a_worker_drains_it(grid: Grid, tmp_path: Path) -> None:
    worker = await grid.add_worker("w1", slots=1)
    started = tmp_path / "started"
    task = await grid.submit(cmd=f"touch {started}; sleep 0.5; echo done", shell=True)
    await eventually_async(started.exists)
    await grid.stop_worker(worker)  # what SIGTERM does
    done = await grid.wait(task["id"])
    assert done["state"] == "succeeded"
    assert (await grid.output(task["id"]))["stdout"]["text"] == "done\n"


async def test_drain_grace_stops_what_runs_too_long(tmp_path: Path) -> None:
    grid = Grid(tmp=tmp_path)
    await grid.start_master()
    try:
        worker = await grid.add_worker("w1", slots=1)
        worker.config.drain_grace_s = 0.3
        started = tmp_path / "started"
        task = await grid.submit(cmd=f"touch {started}; sleep 30", shell=True)
        await eventually_async(started.exists)
        await grid.stop_worker(worker)
        done = await grid.wait(task["id"])
        assert done["state"] == "failed"
        assert "shutting down" in done["error"]
    finally:
        await grid.close()


async def test_drain_of_unknown_or_gone_workers_is_refused(grid: Grid) -> None:
    assert (await grid.api.post("/v1/workers/nobody/drain")).status_code == 404
    worker = await grid.add_worker("w1")
    await grid.stop_worker(worker)
    await eventually_async(lambda: _offline(grid, "w1"))  # the master saw it go
    response = await grid.api.post("/v1/workers/w1/drain")
    assert response.status_code == 409
    assert "not connected" in response.json()["detail"]


async def test_a_worker_with_an_idle_timeout_leaves_once_nothing_runs(grid: Grid) -> None:
    """--idle-timeout: not while a task runs (nor while one waits for it), but that long
    after the last one ended, as a drain: the master sees it go."""
    agent = await grid.add_worker("w1", slots=1, idle_timeout_s=1.0)
    (running,) = [r for r in grid.agents if r.agent is agent]
    loop = asyncio.get_running_loop()
    task = await grid.submit(cmd="sleep 2", shell=True)
    done = await grid.wait(task["id"], timeout=30)
    ended_at = loop.time()
    assert done["state"] == "succeeded"
    assert not running.task.done()  # (busy for 2 s: longer than its idle timeout)
    await asyncio.wait_for(asyncio.shield(running.task), 10)
    assert loop.time() - ended_at >= 0.7  # it waited its idle timeout after the task
    workers = (await grid.api.get("/v1/workers")).json()["workers"]
    assert [(w["id"], w["state"]) for w in workers] == [("w1", "offline")]
    # a task submitted now waits for a worker (none is left)
    later = await grid.submit(cmd="true")
    assert (await grid.task(later["id"]))["state"] == "queued"


async def test_a_worker_near_its_time_limit_takes_only_tasks_that_fit(grid: Grid) -> None:
    """--time-limit: the master sends it only tasks whose timeout ends before it leaves
    (one without a timeout could outlast it); those wait for another worker, which takes
    them. At its limit it leaves."""
    agent = await grid.add_worker("short", slots=2, time_limit_s=6.0)
    (running,) = [r for r in grid.agents if r.agent is agent]
    too_long = await grid.submit(cmd="true", shell=True, timeout_s=60)
    no_timeout = await grid.submit(cmd="true", shell=True)
    fits = await grid.submit(cmd="true", shell=True, timeout_s=2)
    assert (await grid.wait(fits["id"], timeout=20))["state"] == "succeeded"
    assert (await grid.task(fits["id"]))["worker_id"] == "short"
    for waiting in (too_long, no_timeout):
        assert (await grid.task(waiting["id"]))["state"] == "queued"
    # a worker without a limit takes them
    await grid.add_worker("long", slots=2)
    for waiting in (too_long, no_timeout):
        done = await grid.wait(waiting["id"], timeout=20)
        assert done["state"] == "succeeded"
        assert done["worker_id"] == "long"
    # at its limit it leaves, as a drain: the master sees it go
    await asyncio.wait_for(asyncio.shield(running.task), 15)

    async def short_offline() -> bool:
        workers = (await grid.api.get("/v1/workers")).json()["workers"]
        return {w["id"]: w["state"] for w in workers}.get("short") == "offline"

    await eventually_async(short_offline, 10)
