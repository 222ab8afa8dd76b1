"""Liveness: a worker that goes silent is cut off and its attempts end lost, not hanging."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from gridrun._proto import worker_pb2 as pb
from gridrun._proto import worker_pb2_grpc
from tests.integration.conftest import Grid

pytestmark = pytest.mark.timeout(60)


async def test_a_silent_worker_is_disconnected_and_its_task_lost(grid: Grid) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grid.grpc_port}") as channel:
        call = worker_pb2_grpc.WorkerServiceStub(channel).Connect()
        await call.write(pb.WorkerMessage(hello=pb.Hello(worker_id="mute", slots=1)))
        welcome = await call.read()
        assert welcome.WhichOneof("msg") == "welcome"
        assert welcome.welcome.heartbeat_interval_ms == 200
        task = await grid.submit(cmd="sleep 60")
        assign = await asyncio.wait_for(call.read(), 10)
        assert assign.assign.ref.task_id == task["id"]
        assert list(assign.assign.argv) == ["sleep", "60"]
        # never heartbeat, never report: after the 3 s liveness timeout the master gives up
        done = await grid.wait(task["id"], 15)
        assert done["state"] == "lost"
        assert done["worker_id"] == "mute"
        assert await asyncio.wait_for(call.read(), 10) is grpc.aio.EOF
    workers = (await grid.api.get("/v1/workers")).json()["workers"]
    assert [(w["id"], w["state"]) for w in workers] == [("mute", "offline")]


async def test_a_late_result_from_a_worker_declared_lost_is_acked_and_dropped(grid: Grid) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grid.grpc_port}") as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        call = stub.Connect()
        await call.write(pb.WorkerMessage(hello=pb.Hello(worker_id="late", slots=1)))
        await call.read()
        task = await grid.submit(cmd="true")
        assign = await asyncio.wait_for(call.read(), 10)
        ref = assign.assign.ref
        assert (await grid.wait(task["id"], 15))["state"] == "lost"
        call.cancel()
        # it comes back with the result it kept in its outbox
        call = stub.Connect()
        hello = pb.Hello(worker_id="late", slots=1, unacked=[ref])
        await call.write(pb.WorkerMessage(hello=hello))
        assert (await call.read()).WhichOneof("msg") == "welcome"
        finished = pb.Finished(ref=ref, outcome=pb.OUTCOME_EXITED, has_exit_code=True, exit_code=0)
        await call.write(pb.WorkerMessage(finished=finished))
        ack = await asyncio.wait_for(call.read(), 10)
        assert ack.WhichOneof("msg") == "ack"
        assert ack.ack.refs[0].task_id == ref.task_id
        call.cancel()
    still = await grid.task(task["id"])
    assert still["state"] == "lost"  # the stale result was not applied
    stats = (await grid.api.get("/v1/stats")).json()
    assert stats["stale_reports_dropped"] == 1
