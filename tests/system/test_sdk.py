"""The Python SDK against a real master process: typed answers, domain errors."""

from __future__ import annotations

import pytest

from gridrun.client import Client
from gridrun.errors import ClientError, InvalidSpec, InvalidTransition, TaskNotFound
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]


def test_sdk_round_trip_and_errors(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", labels=("zone=b",))
    with Client(system_grid.url) as grid:
        task = grid.submit("sh -c 'echo out; echo err >&2; exit 2'", labels={"zone": "b"}, name="x")
        done = grid.wait(task["id"], timeout_s=30)
        assert done["state"] == "failed"
        assert done["exit_code"] == 2
        assert grid.output_bytes(task["id"], "stdout") == b"out\n"
        assert grid.output(task["id"])["stderr"]["text"] == "err\n"
        batch = grid.submit_many([{"argv": ["echo", str(i)]} for i in range(5)])
        assert len(batch) == 5
        for t in batch:
            assert grid.wait(t["id"], timeout_s=30)["state"] == "succeeded"
        listed = list(grid.iter_tasks(limit=2))
        assert [t["id"] for t in listed] == [t["id"] for t in reversed([task, *batch])]
        assert grid.workers()[0]["labels"] == {"zone": "b"}
        assert grid.health()["status"] == "ok"
        with pytest.raises(TaskNotFound):
            grid.get("nope")
        with pytest.raises(InvalidSpec, match="cmd must not be empty"):
            grid.submit("  ")
        with pytest.raises(InvalidTransition):
            grid.cancel(task["id"])
    with Client("http://127.0.0.1:1") as nowhere, pytest.raises(ClientError, match="cannot reach"):
        nowhere.workers()
