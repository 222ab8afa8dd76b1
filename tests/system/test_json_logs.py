"""--log-format json: every line the master and the worker write is one JSON object, and
records about a worker or a task carry its id as a field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import eventually
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
