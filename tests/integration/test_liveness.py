"""Liveness: a worker that goes silent is cut off and its attempts end lost, not hanging."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from gridrun._proto import worker_pb2 as pb
from gridrun._proto import worker_pb2_grpc
from tests.helpers import eventually_async
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


async def test_a_large_fleet_is_paced_to_the_heartbeat_budget(tmp_path: Path) -> None:
    """With a budget of 5 heartbeats a second and a 0.2 s base interval, the n-th worker to
    join beats every max(0.2, n / 5) s; those that joined earlier are then asked to slow down
    to the same pace; and each is cut off only after the timeout of its pace (2 s x 3 = 6 s
    here), not the base one."""
    grid = Grid(tmp=tmp_path)
    await grid.start_master(max_heartbeats_per_s=5.0, liveness_timeout_s=2.0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grid.grpc_port}") as channel:
            stub = worker_pb2_grpc.WorkerServiceStub(channel)
            calls, intervals = [], []
            for n in range(1, 4):
                call = stub.Connect()
                await call.write(pb.WorkerMessage(hello=pb.Hello(worker_id=f"w{n}", slots=1)))
                welcome = await call.read()
                calls.append(call)
                intervals.append(welcome.welcome.heartbeat_interval_ms)
            assert intervals == [200, 400, 600]
            for call in calls[:2]:  # paced anew by the next liveness round
                again = await asyncio.wait_for(call.read(), 5)
                assert again.welcome.heartbeat_interval_ms == 600
            # none of them ever beats: without the new pace w1 would be cut off after 2 s
            await asyncio.sleep(3.0)  # that it does NOT happen takes this long to see
            listing = (await grid.api.get("/v1/workers")).json()["workers"]
            assert {w["id"]: w["state"] for w in listing} == {
                "w1": "online", "w2": "online", "w3": "online"
            }  # fmt: skip

            async def all_offline() -> bool:
                listing = (await grid.api.get("/v1/workers")).json()["workers"]
                return {w["state"] for w in listing} == {"offline"}

            await eventually_async(all_offline, 10)  # by about 6 s in all (3 x 2 s paced)
            assert await asyncio.wait_for(calls[0].read(), 5) is grpc.aio.EOF
    finally:
        await grid.close()


async def test_a_worker_slows_its_heartbeat_when_the_master_paces_it_anew(tmp_path: Path) -> None:
    grid = Grid(tmp=tmp_path)
    await grid.start_master(max_heartbeats_per_s=5.0)
    try:
        first = await grid.add_worker("first")
        assert first.heartbeat_s == 0.2
        for name in ("second", "third"):
            await grid.add_worker(name)

        await eventually_async(lambda: first.heartbeat_s == 0.6, 5)
        task = await grid.submit(cmd="echo still works")  # and the stream still serves
        assert (await grid.wait(task["id"], 15))["state"] == "succeeded"
    finally:
        await grid.close()
