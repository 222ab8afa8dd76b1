"""Random and malformed messages on the worker stream (hypothesis) must not crash, wedge or
corrupt the master: after every attack the API answers, the real worker's tasks are intact and
new work still runs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridrun._proto import worker_pb2 as pb
from gridrun.model import WORKER_ID, TaskState
from tests.integration.conftest import Grid

CONNECT = "/gridrun.v1.WorkerService/Connect"
U32, U64, I32, I64 = 2**32 - 1, 2**64 - 1, 2**31 - 1, 2**63 - 1


def refs(task_ids: list[str]) -> st.SearchStrategy[pb.AttemptRef]:
    """Refs of the real tasks' current attempts (1 for those that ran), and anything else."""
    real = [pb.AttemptRef(task_id=t, attempt=a) for t in task_ids for a in (0, 1)]
    ids = st.sampled_from(task_ids) | st.text(max_size=80)
    return st.sampled_from(real) | st.builds(
        pb.AttemptRef, task_id=ids, attempt=st.integers(0, U32)
    )


def messages(task_ids: list[str]) -> st.SearchStrategy[bytes]:
    ref = refs(task_ids)
    hello = st.builds(
        pb.Hello,
        worker_id=(st.from_regex(WORKER_ID, fullmatch=True) | st.text(max_size=100)).filter(
            lambda s: s != "w1"  # not the real worker: without join tokens anyone may be anyone
        ),
        hostname=st.text(max_size=50),
        labels=st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=5),
        slots=st.integers(0, U32),
        version=st.text(max_size=20),
        running=st.lists(ref, max_size=5),
        unacked=st.lists(ref, max_size=5),
    )
    heartbeat = st.builds(
        pb.Heartbeat,
        free_slots=st.integers(0, U32),
        running=st.integers(0, U32),
        draining=st.booleans(),
    )
    started = st.builds(
        pb.Started, ref=ref, started_at_ms=st.integers(-I64 - 1, I64), pid=st.integers(-I32, I32)
    )
    output = st.builds(
        pb.Output,
        ref=ref,
        stdout_offset=st.integers(0, U64),
        stdout=st.binary(max_size=4096),
        stderr_offset=st.integers(0, U64),
        stderr=st.binary(max_size=4096),
    )
    finished = st.builds(
        pb.Finished,
        ref=ref,
        outcome=st.integers(-5, 20),
        has_exit_code=st.booleans(),
        exit_code=st.integers(-I32 - 1, I32),
        signal=st.integers(-I32 - 1, I32),
        started_at_ms=st.integers(-I64 - 1, I64),
        finished_at_ms=st.integers(-I64 - 1, I64),
        error=st.text(max_size=200),
        stdout_bytes=st.integers(0, U64),
        stderr_bytes=st.integers(0, U64),
    )
    return st.one_of(
        hello.map(lambda m: pb.WorkerMessage(hello=m)),
        heartbeat.map(lambda m: pb.WorkerMessage(heartbeat=m)),
        started.map(lambda m: pb.WorkerMessage(started=m)),
        output.map(lambda m: pb.WorkerMessage(output=m)),
        finished.map(lambda m: pb.WorkerMessage(finished=m)),
        st.just(pb.WorkerMessage()),
    ).map(lambda m: m.SerializeToString()) | st.binary(max_size=512)  # or bytes that won't parse


def sessions(task_ids: list[str]) -> st.SearchStrategy[list[bytes]]:
    """Either a plausible session (a valid Hello, then anything) or anything at all."""
    valid_hello = st.builds(
        pb.Hello,
        worker_id=st.from_regex(WORKER_ID, fullmatch=True).filter(lambda s: s != "w1"),
        slots=st.integers(1, 64),
        running=st.lists(refs(task_ids), max_size=3),
        unacked=st.lists(refs(task_ids), max_size=3),
    ).map(lambda m: pb.WorkerMessage(hello=m).SerializeToString())
    anything = st.lists(messages(task_ids), max_size=8)
    return st.tuples(valid_hello, anything).map(lambda t: [t[0], *t[1]]) | anything.filter(bool)


async def attack(port: int, frames: list[bytes]) -> None:
    """Send raw frames on a Connect stream, read whatever comes back, hang up."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call: Any = channel.stream_stream(CONNECT)()  # no (de)serializers: raw bytes
        try:
            async with asyncio.timeout(5):
                for frame in frames:
                    await call.write(frame)
                await call.done_writing()
                while await call.read() is not grpc.aio.EOF:
                    pass
        except (grpc.aio.AioRpcError, TimeoutError, asyncio.InvalidStateError):
            pass  # refused, cut off, or still talking: all fine, the master is what we check
        finally:
            call.cancel()


async def test_random_worker_messages_do_not_hurt_the_master(grid: Grid) -> None:
    await grid.add_worker("w1", slots=2)
    running = await grid.submit(cmd="sleep 600")  # cancelled at the end
    await grid.wait_state(running["id"], "running")
    done = await grid.submit(cmd="echo before")
    await grid.wait(done["id"])
    queued = await grid.submit(cmd="true", labels={"nowhere": "1"})
    task_ids = [running["id"], done["id"], queued["id"]]
    before = {t: await grid.task(t) for t in task_ids}
    loop = asyncio.get_running_loop()

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(frames=sessions(task_ids))
    def one_attack(frames: list[bytes]) -> None:
        asyncio.run_coroutine_threadsafe(attack(grid.grpc_port, frames), loop).result(30)
        health = asyncio.run_coroutine_threadsafe(grid.api.get("/healthz"), loop).result(30)
        assert health.status_code == 200

    await asyncio.to_thread(one_attack)

    # the real worker's tasks are as they were: fenced against every impostor
    after = {t: await grid.task(t) for t in task_ids}
    for task_id in task_ids:
        for key in ("state", "worker_id", "attempt", "exit_code"):
            assert after[task_id][key] == before[task_id][key], (task_id, key)
    assert after[running["id"]]["state"] == TaskState.RUNNING
    out = await grid.output(done["id"])
    assert out["stdout"]["text"] == "before\n"
    # and new work still flows through the real worker
    fresh = await grid.submit(cmd="echo after")
    finished = await grid.wait(fresh["id"])
    assert (finished["state"], finished["worker_id"]) == ("succeeded", "w1")
    cancel = await grid.api.post(f"/v1/tasks/{running['id']}/cancel")
    assert cancel.status_code == 200
    assert (await grid.wait(running["id"]))["state"] == "cancelled"


async def test_an_impostor_cannot_report_for_another_workers_task(grid: Grid) -> None:
    await grid.add_worker("w1", slots=1)
    task = await grid.submit(cmd="sleep 60")
    await grid.wait_state(task["id"], "running")
    ref = pb.AttemptRef(task_id=task["id"], attempt=1)
    frames = [
        pb.WorkerMessage(hello=pb.Hello(worker_id="impostor", slots=1, running=[ref])),
        pb.WorkerMessage(started=pb.Started(ref=ref, started_at_ms=time.time_ns() // 1_000_000)),
        pb.WorkerMessage(output=pb.Output(ref=ref, stdout=b"forged\n")),
        pb.WorkerMessage(finished=pb.Finished(ref=ref, outcome=pb.OUTCOME_EXITED)),
    ]
    await attack(grid.grpc_port, [f.SerializeToString() for f in frames])
    after = await grid.task(task["id"])
    assert (after["state"], after["worker_id"], after["exit_code"]) == ("running", "w1", None)
    assert (await grid.output(task["id"]))["stdout"]["text"] == ""
    stats = (await grid.api.get("/v1/stats")).json()
    assert stats["stale_reports_dropped"] >= 2
    assert (await grid.api.post(f"/v1/tasks/{task['id']}/cancel")).status_code == 200
    assert (await grid.wait(task["id"]))["state"] == "cancelled"


async def test_a_report_for_a_task_that_does_not_exist_is_dropped_not_fatal(grid: Grid) -> None:
    """A worker naming an unknown task (a wiped database, a forged id) keeps its stream: the
    report is stale, acknowledged and dropped; the worker is told to stop that attempt."""
    ghost = pb.AttemptRef(task_id="no-such-task", attempt=1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grid.grpc_port}") as channel:
        call: Any = channel.stream_stream(
            CONNECT,
            request_serializer=pb.WorkerMessage.SerializeToString,
            response_deserializer=pb.MasterMessage.FromString,
        )()
        await call.write(pb.WorkerMessage(hello=pb.Hello(worker_id="w9", slots=1)))
        assert (await call.read()).WhichOneof("msg") == "welcome"
        await call.write(
            pb.WorkerMessage(
                started=pb.Started(ref=ghost, started_at_ms=time.time_ns() // 1_000_000)
            )
        )
        await call.write(pb.WorkerMessage(output=pb.Output(ref=ghost, stdout=b"x")))
        await call.write(pb.WorkerMessage(finished=pb.Finished(ref=ghost, outcome=1)))
        kinds = []
        async with asyncio.timeout(10):
            while len(kinds) < 2:
                kinds.append((await call.read()).WhichOneof("msg"))
        assert kinds == ["cancel", "ack"]
        workers = (await grid.api.get("/v1/workers")).json()["workers"]
        assert {w["id"]: w["state"] for w in workers}["w9"] == "online"  # the stream survived
        stats = (await grid.api.get("/v1/stats")).json()
        assert stats["stale_reports_dropped"] == 3
        await call.done_writing()
        async with asyncio.timeout(10):
            assert await call.read() is grpc.aio.EOF
