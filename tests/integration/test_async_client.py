"""The asyncio SDK (`AsyncClient`) against an in-process master and worker: the same calls and
the same error classes as `Client`, awaited. (Every integration test also submits, reads and
waits through it: the Grid helpers are built on it.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from gridrun.client import AsyncClient
from gridrun.errors import (
    ClientError,
    GridrunError,
    InvalidSpec,
    InvalidTransition,
    JobNotFound,
    NoWorkerMatches,
    ScheduleNotFound,
    TaskNotFound,
    WorkerNotFound,
)
from tests.integration.conftest import Grid


async def test_async_client_submits_follows_lists_and_waits(grid: Grid) -> None:
    await grid.add_worker("w1", labels={"zone": "b"})
    async with AsyncClient(f"http://127.0.0.1:{grid.http_port}") as client:
        task = await client.submit(
            "echo out; echo err >&2; exit 2", shell=True, labels={"zone": "b"}, name="x"
        )
        events = [event async for event in client.follow(task["id"])]
        kinds = [kind for kind, _ in events]
        assert kinds[-1] == "end", kinds
        texts = {data["stream"]: data["text"] for kind, data in events if kind == "output"}
        assert texts == {"stdout": "out\n", "stderr": "err\n"}
        done = await client.wait(task["id"], timeout_s=20)
        assert (done["state"], done["exit_code"], done["name"]) == ("failed", 2, "x")
        assert await client.output_bytes(task["id"], "stderr") == b"err\n"
        ids = await client.submit_ids([{"argv": ["echo", str(i)]} for i in range(3)])
        for task_id in ids:
            assert (await client.wait(task_id, timeout_s=20))["state"] == "succeeded"
        listed = [t["id"] async for t in client.iter_tasks(limit=2)]
        assert listed == [*reversed(ids), task["id"]]
        assert [w["labels"] for w in await client.workers()] == [{"zone": "b"}]


async def test_async_client_raises_each_error_as_its_own_class(grid: Grid) -> None:
    async with AsyncClient(f"http://127.0.0.1:{grid.http_port}") as client:
        ended = await client.submit("true", shell=True)
        await client.cancel(ended["id"])
        cases: list[tuple[type[GridrunError], Callable[[], Awaitable[object]]]] = [
            (TaskNotFound, lambda: client.get("no-such-task")),
            (WorkerNotFound, lambda: client.drain("no-such-worker")),
            (ScheduleNotFound, lambda: client.remove_schedule("no-such-schedule")),
            (JobNotFound, lambda: client.job("no-such-job")),
            (NoWorkerMatches, lambda: client.broadcast(cmd="true")),
            (InvalidSpec, lambda: client.submit("  ")),
            (InvalidTransition, lambda: client.cancel(ended["id"])),
        ]
        for expected, call in cases:
            with pytest.raises(GridrunError) as raised:
                await call()
            assert type(raised.value) is expected, (expected, type(raised.value), raised.value)
    async with AsyncClient("http://127.0.0.1:1") as nowhere:
        with pytest.raises(ClientError, match="cannot reach"):
            await nowhere.workers()
