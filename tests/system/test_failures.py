"""Issue-3 failure drills with real processes: SIGKILLed masters and workers, master SIGTERM,
drain by SIGTERM, idempotency across a restart."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.helpers import eventually, pid_alive
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(240)]


def _post(grid: SystemGrid, body: object) -> httpx.Response:
    return httpx.post(f"{grid.url}/v1/tasks", json=body, timeout=60)


def test_master_sigkill_with_500_tasks_in_flight_each_runs_at_most_once(
    system_grid: SystemGrid, tmp_path: Path
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=4)
    system_grid.start_worker("w2", slots=4)
    ids_file = tmp_path / "ids"
    bodies = [
        {"cmd": f'echo "$GRIDRUN_TASK_ID" >> {ids_file}; sleep 0.05; exit {i % 4}', "shell": True}
        for i in range(500)
    ]
    response = _post(system_grid, {"tasks": bodies})
    assert response.status_code == 201
    tasks = response.json()["tasks"]
    expected = {t["id"]: i % 4 for i, t in enumerate(tasks)}
    eventually(lambda: ids_file.exists() and len(ids_file.read_text().split()) >= 100, 60)
    system_grid.kill_master(signal.SIGKILL)
    time.sleep(1)  # tasks keep running and finishing on the workers meanwhile
    system_grid.start_master()
    finals = {t["id"]: system_grid.task(t["id"], wait=60) for t in tasks}
    states = Counter(t["state"] for t in finals.values())
    assert set(states) <= {"succeeded", "failed", "lost"}, states
    ran = Counter(ids_file.read_text().split())
    assert max(ran.values()) == 1  # max_attempts=1: nothing ran twice
    for task_id, task in finals.items():
        if task["state"] in ("succeeded", "failed"):
            assert ran[task_id] == 1
            assert task["exit_code"] == expected[task_id]  # its real exit code
    assert states["lost"] <= 16, states  # at most what was in flight on the 8 slots


def test_worker_sigkill_with_two_attempts_finishes_on_the_other_worker(
    system_grid: SystemGrid, tmp_path: Path
) -> None:
    system_grid.start_master()
    system_grid.start_worker("a", slots=1)
    system_grid.start_worker("b", slots=1)
    pid_file = tmp_path / "pid"
    script = (
        f"if [ ! -e {pid_file} ]; then echo $$ > {pid_file}; sleep 60; fi;"
        ' echo "on $GRIDRUN_WORKER_ID"'
    )
    task_id = system_grid.cli(
        "submit", "--max-attempts", "2", "--retry-delay", "0", "--shell", script
    ).stdout.strip()
    eventually(lambda: pid_file.exists() and pid_file.read_text().strip(), 20)
    first = system_grid.task(task_id)["worker_id"]
    orphan = int(pid_file.read_text())
    try:
        system_grid.workers[first].send_signal(signal.SIGKILL)
        done = system_grid.task(task_id, wait=40)
        assert done["state"] == "succeeded"
        other = "b" if first == "a" else "a"
        assert [(a["worker_id"], a["state"]) for a in done["attempts"]] == [
            (first, "lost"),
            (other, "succeeded"),
        ]
        assert system_grid.cli("logs", task_id).stdout == f"on {other}\n"
    finally:
        if pid_alive(orphan):
            os.killpg(orphan, signal.SIGKILL)


def test_master_sigterm_with_tasks_in_flight_loses_nothing(
    system_grid: SystemGrid, tmp_path: Path
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=4)
    ids_file = tmp_path / "ids"
    body = {
        "tasks": [{"cmd": f'sleep 0.3; echo "$GRIDRUN_TASK_ID" >> {ids_file}', "shell": True}] * 40
    }
    tasks = _post(system_grid, body).json()["tasks"]
    eventually(lambda: ids_file.exists(), 30)
    system_grid.kill_master(signal.SIGTERM)
    assert system_grid.master is not None
    assert system_grid.master.returncode == 0  # a clean exit
    system_grid.start_master()
    finals = [system_grid.task(t["id"], wait=60) for t in tasks]
    assert Counter(t["state"] for t in finals) == {"succeeded": 40}
    assert sorted(ids_file.read_text().split()) == sorted(t["id"] for t in tasks)


def test_sigterm_drains_a_worker_process(system_grid: SystemGrid, tmp_path: Path) -> None:
    system_grid.start_master()
    worker = system_grid.start_worker("w1", slots=2)
    started = tmp_path / "started"
    task_id = system_grid.cli(
        "submit", "--shell", f"touch {started}; sleep 1; echo drained-ok"
    ).stdout.strip()
    eventually(started.exists, 20)
    worker.send_signal(signal.SIGTERM)
    eventually(lambda: system_grid.worker_state("w1") == "draining", 10)
    late = system_grid.cli("submit", "--", "echo", "late").stdout.strip()
    assert worker.wait(timeout=30) == 0
    done = system_grid.task(task_id, wait=10)
    assert done["state"] == "succeeded"
    assert system_grid.cli("logs", task_id).stdout == "drained-ok\n"
    assert system_grid.task(late)["state"] == "queued"  # nothing new went to the draining worker
    assert system_grid.worker_state("w1") == "offline"


def test_idempotency_key_survives_a_master_sigkill(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    first = system_grid.cli("submit", "--idempotency-key", "nightly-2026-11-24", "--", "true")
    system_grid.kill_master(signal.SIGKILL)
    system_grid.start_master()
    again = system_grid.cli("submit", "--idempotency-key", "nightly-2026-11-24", "--", "true")
    assert again.stdout.strip() == first.stdout.strip()
    assert len(system_grid.cli_json("ls")) == 1


def test_results_survive_a_worker_restart_while_the_master_is_down(
    system_grid: SystemGrid, tmp_path: Path
) -> None:
    system_grid.start_master()
    worker = system_grid.start_worker("w1")
    gate, started = tmp_path / "gate", tmp_path / "started"
    task_id = system_grid.cli(
        "submit", "--shell", f"touch {started}; while [ ! -e {gate} ]; do sleep 0.02; done; exit 9"
    ).stdout.strip()
    eventually(started.exists, 20)
    system_grid.kill_master(signal.SIGKILL)
    gate.touch()
    outbox = tmp_path / "workers" / "w1" / "outbox"
    eventually(lambda: any(outbox.glob("*.result")), 20)  # the result waits on disk
    worker.send_signal(signal.SIGKILL)  # and the worker dies too
    worker.wait(timeout=10)
    system_grid.start_master()
    system_grid.start_worker("w1")  # same data dir: same id, same outbox
    done = system_grid.task(task_id, wait=30)
    assert done["state"] == "failed"
    assert done["exit_code"] == 9
    eventually(lambda: not any(outbox.glob("*.result")), 20)  # acknowledged, then forgotten
