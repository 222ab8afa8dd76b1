"""Prefetch crash drills with real processes (issue 20): what a worker holds beyond its slots
never ran, so it is never `lost` and never runs twice, whether the worker is SIGKILLed, drained,
or the held task cancelled; what it had started is lost (its retry policy decides)."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import eventually
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(240)]


def submit(grid: SystemGrid, cmd: str) -> dict[str, Any]:
    response = httpx.post(f"{grid.url}/v1/tasks", json={"cmd": cmd, "shell": True}, timeout=30)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def marked(ran: Path, then: str = "true") -> str:
    return f'echo "$GRIDRUN_TASK_ID" >> {ran}; {then}'


def hold_three(grid: SystemGrid, ran: Path, gate: Path) -> tuple[dict[str, Any], list[str]]:
    """Worker `a` (1 slot, prefetch 3) runs a gated task and holds three more."""
    grid.start_worker("a", slots=1, extra=("--prefetch", "3"))
    running = submit(grid, marked(ran, f"while [ ! -e {gate} ]; do sleep 0.05; done"))
    eventually(lambda: grid.task(running["id"])["state"] == "running", 20)
    held = [submit(grid, marked(ran))["id"] for _ in range(3)]
    eventually(lambda: all(grid.task(t)["state"] == "assigned" for t in held), 20)
    assert {grid.task(t)["worker_id"] for t in held} == {"a"}
    return running, held


def test_sigkill_of_a_worker_holding_prefetched_tasks(
    system_grid: SystemGrid, tmp_path: Path
) -> None:
    ran, gate = tmp_path / "ran", tmp_path / "gate"
    system_grid.start_master()
    running, held = hold_three(system_grid, ran, gate)
    system_grid.workers["a"].send_signal(signal.SIGKILL)
    system_grid.workers["a"].wait(timeout=30)
    system_grid.start_worker("b", slots=2)
    gate.touch()
    finals = {t: system_grid.task(t, wait=60) for t in held}
    assert {t["state"] for t in finals.values()} == {"succeeded"}, finals
    assert {t["worker_id"] for t in finals.values()} == {"b"}
    for task in finals.values():  # the held attempt ended unstarted and was not a try
        first, second = task["attempts"]
        assert (first["worker_id"], first["state"], first["started_at"]) == ("a", "queued", None)
        assert "never started" in first["error"]
        assert second["state"] == "succeeded"
    # the one that had started is lost (max_attempts 1): never run again
    assert system_grid.task(running["id"], wait=30)["state"] == "lost"
    counts = Counter(ran.read_text().split())
    assert counts == Counter({running["id"]: 1, **dict.fromkeys(held, 1)})


def test_cancel_of_a_held_task_and_drain_with_held_tasks(
    system_grid: SystemGrid, tmp_path: Path
) -> None:
    ran, gate = tmp_path / "ran", tmp_path / "gate"
    system_grid.start_master()
    running, held = hold_three(system_grid, ran, gate)
    cancelled = system_grid.cli("cancel", held[0])
    assert cancelled.returncode == 0, cancelled.stderr
    assert system_grid.task(held[0], wait=30)["state"] == "cancelled"
    system_grid.start_worker("b", slots=2)
    drained = system_grid.cli("drain", "a")
    assert drained.returncode == 0, drained.stderr
    # the two still held go back to the queue (not a try) and run on b, while a's running
    # task finishes there
    for task_id in held[1:]:
        task = system_grid.task(task_id, wait=60)
        assert (task["state"], task["worker_id"]) == ("succeeded", "b"), task
        assert [a["state"] for a in task["attempts"]] == ["queued", "succeeded"]
    assert system_grid.task(running["id"])["state"] == "running"
    gate.touch()
    assert system_grid.task(running["id"], wait=60)["state"] == "succeeded"
    counts = Counter(ran.read_text().split())
    assert counts == Counter({running["id"]: 1, held[1]: 1, held[2]: 1})  # cancelled: never ran


def test_master_sigkill_while_a_worker_holds_prefetched_tasks(
    system_grid: SystemGrid, tmp_path: Path
) -> None:
    ran, gate = tmp_path / "ran", tmp_path / "gate"
    system_grid.start_master()
    running, held = hold_three(system_grid, ran, gate)
    system_grid.kill_master(signal.SIGKILL)
    system_grid.start_master()
    # the worker gave back what it held when its stream ended (kept in its outbox): the three
    # run once each, as the running one goes on and is reported when the worker reconnects
    gate.touch()
    for task_id in [running["id"], *held]:
        assert system_grid.task(task_id, wait=60)["state"] == "succeeded", task_id
    for task_id in held:  # given back unstarted: not a try
        first = system_grid.task(task_id)["attempts"][0]
        assert (first["state"], first["started_at"]) == ("queued", None)
    counts = Counter(ran.read_text().split())
    assert counts == Counter({running["id"]: 1, **dict.fromkeys(held, 1)})
