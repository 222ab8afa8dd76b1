"""Two real `gridrun master` processes on one PostgreSQL database, real workers failing over
between them: a master SIGKILLed mid-run, a cancel crossing masters, and the database's
connections killed under load. Every task must end exactly once, its result intact.

Each command leaves a marker file per run, so a task run twice shows as two lines.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import pg
from tests.helpers import eventually, pid_alive, read_pid
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.pg, pytest.mark.slow, pytest.mark.timeout(600)]


class Pair:
    """Masters A and B on one database; workers that know both."""

    def __init__(self, tmp: Path, url: str) -> None:
        self.a = SystemGrid(tmp / "a")
        self.b = SystemGrid(tmp / "b")
        for grid in (self.a, self.b):
            grid.tmp.mkdir(parents=True)
            grid.db = url
        self.url = url
        self.ran = tmp / "ran"
        self.ran.mkdir()

    def start(self, workers_per_master: int = 2) -> None:
        self.a.start_master()
        self.b.start_master()
        both = f"127.0.0.1:{self.a.grpc_port},127.0.0.1:{self.b.grpc_port}"
        reverse = f"127.0.0.1:{self.b.grpc_port},127.0.0.1:{self.a.grpc_port}"
        for i in range(workers_per_master):
            self.a.start_worker(f"wa{i}", slots=2, master=both)
            self.b.start_worker(f"wb{i}", slots=2, master=reverse)

    def submit(self, grid: SystemGrid, first: int, count: int, cmd: str) -> list[str]:
        """Tasks first..first+count-1; each runs `cmd` with N set to its number."""
        bodies = [
            {"cmd": f"N={n}; echo $N >> {self.ran}/$N; {cmd}", "shell": True, "name": f"t{n}"}
            for n in range(first, first + count)
        ]
        response = httpx.post(f"{grid.url}/v1/tasks", json={"tasks": bodies}, timeout=30)
        assert response.status_code == 201, response.text
        return [t["id"] for t in response.json()["tasks"]]

    def stats(self, grid: SystemGrid) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{grid.url}/v1/stats", timeout=10).json()
        return stats

    def terminal(self, grid: SystemGrid) -> int:
        tasks = self.stats(grid)["tasks"]
        return sum(
            n for state, n in tasks.items() if state not in ("queued", "assigned", "running")
        )

    def all_tasks(self, grid: SystemGrid) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if cursor is not None:
                params["cursor"] = cursor
            page = httpx.get(f"{grid.url}/v1/tasks", params=params, timeout=30).json()
            tasks += page["tasks"]
            cursor = page.get("next_cursor")
            if cursor is None:
                return tasks

    def check_exactly_once(self, grid: SystemGrid, expected: int) -> list[dict[str, Any]]:
        tasks = self.all_tasks(grid)
        assert len(tasks) == expected
        for task in tasks:
            n = task["name"][1:]
            marker = self.ran / n
            runs = marker.read_text().split() if marker.exists() else []
            if task["state"] == "succeeded":
                assert runs == [n], f"{task['id']} ran {len(runs)} times"
                out = httpx.get(f"{grid.url}/v1/tasks/{task['id']}/output", timeout=10).json()
                assert out["stdout"]["text"] == f"{n}\n", task
            else:
                # only an attempt its worker never received can be lost with the master
                assert task["state"] == "lost", task
                assert runs == [], f"{task['id']} ended {task['state']} but ran"
        return tasks

    def close(self) -> None:
        self.a.close()
        self.b.close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    with pg.database_sync() as url:
        p = Pair(tmp_path, url)
        try:
            yield p
        finally:
            p.close()


def test_a_master_killed_mid_run_loses_nothing_and_its_workers_move_over(pair: Pair) -> None:
    pair.start(workers_per_master=2)
    ids = pair.submit(pair.a, 0, 500, "sleep 0.02; echo $N")
    ids += pair.submit(pair.b, 500, 500, "sleep 0.02; echo $N")
    eventually(lambda: pair.terminal(pair.b) >= 250, 120, 0.1)
    pair.a.kill_master(signal.SIGKILL)
    killed_at = time.monotonic()

    eventually(lambda: pair.terminal(pair.b) == 1000, 240, 0.2)
    recovered_s = time.monotonic() - killed_at
    tasks = pair.check_exactly_once(pair.b, 1000)
    lost = [t for t in tasks if t["state"] == "lost"]
    assert len(lost) <= 8, lost  # at most what A had assigned to its own workers' slots
    workers = httpx.get(f"{pair.b.url}/v1/workers", timeout=10).json()["workers"]
    assert sorted((w["id"], w["state"]) for w in workers) == [
        ("wa0", "online"), ("wa1", "online"), ("wb0", "online"), ("wb1", "online"),
    ]  # fmt: skip
    for name in ("wa0", "wa1"):
        assert f"connected to master 127.0.0.1:{pair.b.grpc_port}" in pair.a.log(f"worker-{name}")
    print(
        f"1000 tasks, master A SIGKILLed: all terminal {recovered_s:.1f}s after, {len(lost)} lost"
    )


def test_a_cancel_sent_to_one_master_kills_the_process_on_the_others_worker(
    pair: Pair, tmp_path: Path
) -> None:
    pair.a.start_master()
    pair.b.start_master()
    pair.b.start_worker("wb0", slots=1, master=f"127.0.0.1:{pair.b.grpc_port}")
    pidfile = tmp_path / "pid"
    response = httpx.post(
        f"{pair.b.url}/v1/tasks",
        json={"cmd": f"echo $$ > {pidfile}; exec sleep 60", "shell": True},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    task_id = response.json()["id"]
    eventually(lambda: pidfile.exists() and pidfile.read_text().strip(), 20)
    pid = read_pid(pidfile)
    assert pid_alive(pid)
    response = httpx.post(f"{pair.a.url}/v1/tasks/{task_id}/cancel", timeout=10)
    assert response.status_code == 200, response.text
    done = httpx.get(f"{pair.a.url}/v1/tasks/{task_id}", params={"wait": 20}, timeout=30).json()
    assert done["state"] == "cancelled"
    eventually(lambda: not pid_alive(pid), 10)


def test_database_connections_killed_under_load_lose_nothing(pair: Pair) -> None:
    pair.start(workers_per_master=1)
    ids = pair.submit(pair.a, 0, 300, "echo $N")
    ids += pair.submit(pair.b, 300, 300, "echo $N")
    killed = 0
    deadline = time.monotonic() + 120
    while pair.terminal(pair.b) < 600 and time.monotonic() < deadline:
        if killed < 5:
            killed += asyncio.run(pg.terminate_connections(pair.url))
        time.sleep(0.3)
    assert killed >= 5
    eventually(lambda: pair.terminal(pair.a) == 600, 120, 0.2)
    tasks = pair.check_exactly_once(pair.a, 600)
    assert all(t["state"] == "succeeded" for t in tasks), [
        t for t in tasks if t["state"] != "succeeded"
    ]
    for grid in (pair.a, pair.b):
        assert httpx.get(f"{grid.url}/healthz", timeout=5).status_code == 200
