"""--log-format json: every line the master and the worker write is one JSON object, and
records about a worker or a task carry its id as a field."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.helpers import eventually, free_port
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system]


def records(grid: SystemGrid, name: str) -> list[dict[str, Any]]:
    lines = (grid.tmp / f"{name}.log").read_text().splitlines()
    return [json.loads(line) for line in lines]  # fails on any line that is not JSON


def test_json_logs_carry_worker_and_task_ids(system_grid: SystemGrid) -> None:
    grid = system_grid
    grid.start_master("--log-format", "json")
    grid._spawn(
        "worker-w1",
        ["worker", "--master", f"127.0.0.1:{grid.grpc_port}", "--name", "w1",
         "--data-dir", str(grid.tmp / "w1"), "--log-format", "json"],
        env={"GRIDRUN_LOG_FORMAT": "text"},  # the flag wins over the variable
    )  # fmt: skip
    eventually(lambda: grid.worker_state("w1") == "online", 20, 0.1)
    rejected = grid.cli("submit", "--shell", "echo hi | wc -c").stdout.strip()  # no --allow-shell
    assert grid.task(rejected, wait=20)["state"] == "rejected"

    master = records(grid, "master")
    connected = [r for r in master if "connected from" in r.get("msg", "")]
    assert connected
    assert connected[0]["worker_id"] == "w1"
    assert connected[0]["level"] == "info"
    assert connected[0]["logger"] == "gridrun.master.rpc"
    audit = [r["audit"] for r in master if "audit" in r]
    assert any(a["event"] == "task.submit" and a["ids"] == [rejected] for a in audit)

    worker = records(grid, "worker-w1")
    refusal = [r for r in worker if "rejected task" in r["msg"]]
    assert refusal, worker
    assert (refusal[0]["task_id"], refusal[0]["attempt"], refusal[0]["worker_id"]) == (
        rejected,
        1,
        "w1",
    )


def test_an_unknown_log_format_is_refused(system_grid: SystemGrid) -> None:
    result = system_grid.cli("master", "--log-format", "xml", timeout=30)
    assert result.returncode == 2
    assert "--log-format must be one of text, json" in result.stderr


def test_a_worker_serves_its_own_metrics(system_grid: SystemGrid) -> None:
    grid = system_grid
    grid.start_master()
    port = free_port()
    grid._spawn(
        "worker-w1",
        ["worker", "--master", f"127.0.0.1:{grid.grpc_port}", "--name", "w1", "--slots", "3",
         "--data-dir", str(grid.tmp / "w1"), "--metrics", f"127.0.0.1:{port}"],
    )  # fmt: skip
    eventually(lambda: grid.worker_state("w1") == "online", 20, 0.1)
    for argv in (["true"], ["false"], ["true"]):
        assert grid.task(grid.cli("submit", "--", *argv).stdout.strip(), wait=20)["state"]
    running = grid.cli("submit", "--", "sleep", "600").stdout.strip()
    eventually(lambda: grid.task(running)["state"] == "running", 20, 0.1)

    def scrape() -> str:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

    text = scrape()
    assert 'gridrun_worker_slots{worker_id="w1"} 3.0' in text
    assert 'gridrun_worker_running{worker_id="w1"} 1.0' in text
    assert 'gridrun_worker_connected{worker_id="w1"} 1.0' in text
    assert 'gridrun_worker_attempts_ended_total{outcome="exited",worker_id="w1"} 3.0' in text
    grid.cli("cancel", running)
    eventually(lambda: 'outcome="cancelled",worker_id="w1"} 1.0' in scrape(), 20, 0.1)
    eventually(lambda: 'gridrun_worker_running{worker_id="w1"} 0.0' in scrape(), 20, 0.1)


def test_a_bad_metrics_address_is_refused(system_grid: SystemGrid) -> None:
    result = system_grid.cli("worker", "--metrics", "nonsense", "--data-dir", "w", timeout=30)
    assert result.returncode == 1
    assert "--metrics must be host:port" in result.stderr
