"""Durability across restarts: queued tasks survive, workers reconnect by themselves, running
processes keep running and their results arrive, and a worker that never returns is judged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridrun.worker.agent import Agent
from tests.helpers import claim, eventually_async
from tests.integration.conftest import Grid

pytestmark = pytest.mark.timeout(90)
PATIENT_LEASE_S = 20.0


async def test_queued_tasks_survive_a_master_restart_and_workers_reconnect(grid: Grid) -> None:
    tasks = await grid.submit_many([{"cmd": f"echo {i}"} for i in range(20)])
    await grid.stop_master()
    await grid.start_master()
    agent = await grid.add_worker("w1")
    for task in tasks:
        assert (await grid.wait(task["id"]))["state"] == "succeeded"
    # now restart under a connected worker: it comes back by itself
    await grid.stop_master()
    await grid.start_master()
    await eventually_async(lambda: agent.connected.is_set(), 15)
    task = await grid.submit(cmd="echo after restart")
    assert (await grid.wait(task["id"]))["state"] == "succeeded"
    assert (await grid.output(task["id"]))["stdout"]["text"] == "after restart\n"


async def ended_while_master_away(
    grid: Grid, tmp_path: Path, agent: Agent, then: str, before: str = ""
) -> dict[str, Any]:
    """Submit a shell task that runs `before`, waits until the master is stopped, then runs
    `then` and ends: all of that last part happens with no master to tell. Returns the task,
    with the master still down and the process ended.

    The worker's lease is made to outlast the master's absence plus the worker's reconnect
    backoff (up to 3 s): with the grid's 3 s liveness timeout a slow run judged the task
    `lost` before the worker was back, and these tests are about what arrives."""
    grid.master_overrides["liveness_timeout_s"] = PATIENT_LEASE_S
    await grid.stop_master()
    await grid.start_master()

    def back() -> bool:
        session = grid.master.service.sessions.get(agent.id) if grid.master else None
        return session is not None and session.reconciled and not session.closed

    await eventually_async(back, 15)
    gate, started = tmp_path / "gate", tmp_path / "started"
    task = await grid.submit(
        cmd=f"{before}touch {started}; while [ ! -e {gate} ]; do sleep 0.01; done; {then}",
        shell=True,
    )
    await eventually_async(started.exists)
    await grid.stop_master()
    gate.touch()
    await eventually_async(lambda: not agent.executions, 10)
    return task


async def test_a_task_running_through_a_master_restart_reports_its_real_result(
    grid: Grid, tmp_path: Path
) -> None:
    agent = await grid.add_worker("w1")
    # the process finishes while the master is away: the result waits in the outbox
    task = await ended_while_master_away(grid, tmp_path, agent, "echo done; exit 7")
    assert list((tmp_path / "workers" / "w1" / "outbox").iterdir())
    await grid.start_master()
    done = await grid.wait(task["id"])
    assert done["state"] == "failed"
    assert done["exit_code"] == 7
    assert done["attempt"] == 1
    # acknowledged, so the outbox is empty again
    await eventually_async(lambda: not list((tmp_path / "workers" / "w1" / "outbox").iterdir()))


async def test_a_running_task_is_adopted_after_a_master_restart(grid: Grid, tmp_path: Path) -> None:
    await grid.add_worker("w1")
    gate, started = tmp_path / "gate", tmp_path / "started"
    task = await grid.submit(
        cmd=f"touch {started}; while [ ! -e {gate} ]; do sleep 0.01; done", shell=True
    )
    await eventually_async(started.exists)
    await grid.stop_master()
    await grid.start_master()
    # still running on the worker, and the master knows it holds it
    await grid.wait_state(task["id"], "running")
    gate.touch()
    done = await grid.wait(task["id"])
    assert done["state"] == "succeeded"
    assert done["attempt"] == 1  # adopted as it ran, not run again
    assert [(a["attempt"], a["state"]) for a in done["attempts"]] == [(1, "succeeded")]


async def test_tasks_of_a_worker_that_never_returns_end_lost(grid: Grid, tmp_path: Path) -> None:
    agent = await grid.add_worker("w1")
    started = tmp_path / "started"
    task = await grid.submit(cmd=f"touch {started}; sleep 60", shell=True)
    await eventually_async(started.exists)
    await grid.vanish(agent)
    done = await grid.wait(task["id"], 15)  # liveness timeout is 3s in the test grid
    assert done["state"] == "lost"
    assert "unreachable" in done["error"]


async def test_attempts_of_a_worker_that_does_not_come_back_after_a_restart_end_lost(
    grid: Grid, tmp_path: Path
) -> None:
    agent = await grid.add_worker("w1")
    started = tmp_path / "started"
    task = await grid.submit(cmd=f"touch {started}; sleep 60", shell=True)
    await eventually_async(started.exists)
    await grid.stop_master()
    await grid.vanish(agent)  # gone while the master was down
    await grid.start_master()
    assert (await grid.task(task["id"]))["state"] == "running"  # not judged before the timeout
    done = await grid.wait(task["id"], 15)  # liveness timeout (3 s) counted from the restart
    assert done["state"] == "lost"
    assert "unreachable" in done["error"]


async def test_output_made_while_the_master_is_away_arrives_after_it_returns(
    grid: Grid, tmp_path: Path
) -> None:
    agent = await grid.add_worker("w1")
    # 'late' and 'oops' are written with no master to send them to
    task = await ended_while_master_away(
        grid, tmp_path, agent, "echo late; echo oops >&2", before="echo early; "
    )
    await grid.start_master()
    assert (await grid.wait(task["id"]))["state"] == "succeeded"
    out = await grid.output(task["id"])
    assert out["stdout"]["text"] == "early\nlate\n"
    assert out["stderr"]["text"] == "oops\n"
    assert out["stdout"]["bytes_dropped"] == 0


async def test_output_held_for_an_absent_master_is_bounded_and_the_loss_counted(
    grid: Grid, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gridrun.worker import agent as agent_module

    monkeypatch.setattr(agent_module, "REPLAY_BYTES", 3000)
    agent = await grid.add_worker("w1")
    # ten lines of 1000 bytes, each written (and so sent) on its own
    lines = 'for i in 0 1 2 3 4 5 6 7 8 9; do printf "%0999d\\n" $i; sleep 0.05; done'
    task = await ended_while_master_away(grid, tmp_path, agent, lines)
    await grid.start_master()
    assert (await grid.wait(task["id"]))["state"] == "succeeded"
    out = (await grid.output(task["id"]))["stdout"]
    assert out["bytes_total"] == 10_000
    assert 0 < len(out["text"]) <= 3000  # only the newest output was kept
    assert out["bytes_dropped"] == 10_000 - len(out["text"])
    assert out["text"].endswith("9\n")
    assert agent.dropped_output == out["bytes_dropped"]


async def claimed_but_never_sent(grid: Grid, worker: str) -> str:
    """A task the store records as assigned to `worker` that no stream carried: the master's
    claim committed, but it could not know (a commit cut off) or the stream broke first. Its
    labels keep dispatch from placing it by itself."""
    task = await grid.submit(cmd="echo placed", labels={"pool": "later"})
    assert grid.master is not None
    store = grid.master.service.store
    (claimed,) = await claim(store, [(task["id"], worker)], now=grid.master.service.clock.now_ms())
    assert claimed.state.value == "assigned"
    return str(task["id"])


async def test_an_assignment_that_never_reached_a_reconnecting_worker_goes_back_to_the_queue(
    grid: Grid,
) -> None:
    await grid.add_worker("w1", slots=1)
    task_id = await claimed_but_never_sent(grid, "w1")
    assert grid.master is not None
    session = grid.master.service.sessions.get("w1")
    assert session is not None
    session.close("test: the stream broke")  # the same worker process connects again
    await eventually_async(
        lambda: (
            grid.master is not None
            and (s := grid.master.service.sessions.get("w1")) is not None
            and s is not session
            and s.reconciled
        ),
        15,
    )
    task = await grid.task(task_id)
    assert task["state"] == "queued", task  # not lost: it never reached the worker
    assert task["error"] == "never reached the worker"
    await grid.add_worker("w2", slots=1, labels={"pool": "later"})
    done = await grid.wait(task_id)
    assert (done["state"], done["worker_id"], done["attempt"]) == ("succeeded", "w2", 2)


async def test_an_assignment_a_restarted_worker_does_not_hold_ends_lost(grid: Grid) -> None:
    agent = await grid.add_worker("w1", slots=1)
    task_id = await claimed_but_never_sent(grid, "w1")
    await grid.stop_worker(agent)
    # a new process: the one before may have started it, so nobody can say it did not run
    await grid.add_worker("w1", slots=1)
    task = await grid.task(task_id)  # judged in the Hello, before the worker was welcomed
    assert task["state"] == "lost", task
    assert task["error"] == "the worker reconnected without this attempt"
