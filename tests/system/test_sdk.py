"""The Python SDK against a real master process: typed answers, domain errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gridrun.client import Client
from gridrun.errors import (
    ClientError,
    GridrunError,
    InvalidSpec,
    InvalidTransition,
    JobNotFound,
    NotFound,
    NoWorkerMatches,
    ScheduleNotFound,
    TaskNotFound,
    UnsupportedMediaType,
    WorkerNotFound,
)
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


def test_each_error_reaches_the_sdk_as_its_own_class(system_grid: SystemGrid) -> None:
    """A 404 for a worker is WorkerNotFound, not TaskNotFound; a job nobody can run is
    NoWorkerMatches, not an InvalidTransition; an unknown route is NotFound."""
    system_grid.start_master()
    with Client(system_grid.url) as grid:
        cases: list[tuple[type[GridrunError], Callable[[], object]]] = [
            (TaskNotFound, lambda: grid.get("no-such-task")),
            (WorkerNotFound, lambda: grid.drain("no-such-worker")),
            (ScheduleNotFound, lambda: grid.remove_schedule("no-such-schedule")),
            (JobNotFound, lambda: grid.job("no-such-job")),
            (NoWorkerMatches, lambda: grid.broadcast(cmd="true")),
            (NotFound, lambda: grid._json("GET", "/v1/nothing-here")),
            (InvalidSpec, lambda: grid.submit("")),
            (UnsupportedMediaType, lambda: grid._json("POST", "/v1/tasks", content=b"{}")),
        ]
        for expected, call in cases:
            with pytest.raises(GridrunError) as raised:
                call()
            assert type(raised.value) is expected, (expected, type(raised.value), raised.value)
