"""The article's gRPC service: its worker connects unchanged and receives command lines."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from gridrun._proto import node_pb2, node_pb2_grpc
from tests.integration.conftest import Grid

pytestmark = pytest.mark.timeout(60)


async def test_a_legacy_worker_receives_commands_and_they_end_delivered(grid: Grid) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grid.grpc_port}") as channel:
        stub = node_pb2_grpc.NodeServiceStub(channel)
        status = await stub.ReportStatus(node_pb2.Request(action="ping"))
        assert status.data == "ok"
        stream = stub.AssignTask(node_pb2.Request(action="assign"))
        # the article's own request, through the compatibility endpoint
        response = await grid.api.post("/tasks", json={"cmd": "touch test.txt"})
        assert response.status_code == 200
        task_id = response.json()["id"]
        received = await asyncio.wait_for(stream.read(), 10)
        assert received.data == "touch test.txt"
        task = await grid.wait_state(task_id, "delivered")
        assert task["exit_code"] is None  # we do not pretend to know how it went
        assert "legacy" in task["error"]
        stream.cancel()


async def test_a_legacy_worker_only_gets_commands_that_survive_its_space_split(
    grid: Grid,
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grid.grpc_port}") as channel:
        stream = node_pb2_grpc.NodeServiceStub(channel).AssignTask(node_pb2.Request())
        unsafe = [
            await grid.submit(argv=["echo", "two words"]),
            await grid.submit(cmd="echo hi", shell=True),
            await grid.submit(cmd="env", env={"A": "1"}),
            await grid.submit(cmd="true", labels={"gpu": "a100"}),
        ]
        safe = await grid.submit(cmd="echo plain")
        received = await asyncio.wait_for(stream.read(), 10)
        assert received.data == "echo plain"
        await grid.wait_state(safe["id"], "delivered")
        for task in unsafe:
            assert (await grid.task(task["id"]))["state"] == "queued"
        stream.cancel()
    # a real worker takes what the legacy one could not
    await grid.add_worker("w1", labels={"gpu": "a100"})
    for task in unsafe:
        assert (await grid.wait(task["id"]))["state"] == "succeeded"


async def test_gridrun_workers_are_preferred_over_legacy_ones(grid: Grid) -> None:
    await grid.add_worker("w1", slots=4)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grid.grpc_port}") as channel:
        stream = node_pb2_grpc.NodeServiceStub(channel).AssignTask(node_pb2.Request())
        tasks = await grid.submit_many([{"cmd": "true"}] * 3)
        for task in tasks:
            done = await grid.wait(task["id"])
            assert done["state"] == "succeeded"
            assert done["worker_id"] == "w1"
        stream.cancel()
