"""The agent tells its listeners what happens (the worker's metrics are one): a listener hears
the connection, each attempt running and ending, and the result waiting for, then getting, the
master's acknowledgement, without reading the agent's internals."""

from __future__ import annotations

from prometheus_client import generate_latest

from gridrun.model import Outcome
from gridrun.worker.events import AgentEvent, AttemptEnded, Connected, Running, Unacked
from gridrun.worker.metrics import WorkerMetrics
from tests.helpers import eventually_async
from tests.integration.conftest import Grid


async def test_a_listener_hears_a_task_run_end_and_be_acknowledged(grid: Grid) -> None:
    agent = await grid.add_worker("w1", slots=3)
    heard: list[AgentEvent] = []
    agent.subscribe(heard.append)
    metrics = WorkerMetrics(agent.id, 3)
    agent.subscribe(metrics.on_event)
    assert heard == [Connected(True), Running(0), Unacked(0)]  # the state it joins in
    task = await grid.submit(cmd="exit 3", shell=True)
    assert (await grid.wait(task["id"]))["state"] == "failed"
    await eventually_async(lambda: heard[-1] == Unacked(0))  # the master acknowledged it
    assert heard[3:] == [
        Running(1), AttemptEnded(Outcome.EXITED), Unacked(1), Running(0), Unacked(0)
    ]  # fmt: skip
    text = generate_latest(metrics.registry).decode()
    assert 'gridrun_worker_attempts_ended_total{outcome="exited",worker_id="w1"} 1.0' in text
    assert 'gridrun_worker_connected{worker_id="w1"} 1.0' in text
    assert 'gridrun_worker_slots{worker_id="w1"} 3.0' in text
    await grid.stop_master()
    await eventually_async(lambda: Connected(False) in heard)
