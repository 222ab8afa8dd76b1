"""A worker is a client the master must not believe blindly. A small gRPC client holding only
the join token tries what a hostile or broken worker could: take over another worker's identity
and forge its results, send reports out of range, advertise a huge capacity and never report.
Real master, real workers, real processes, real gRPC."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gridrun._proto import worker_pb2 as pb
from gridrun.auth import TokenEntry, digest, new_token
from tests.helpers import eventually_async
from tests.integration.conftest import Grid

pytestmark = pytest.mark.timeout(120)
CONNECT = "/gridrun.v1.WorkerService/Connect"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Rogue:
    """One Connect stream, driven message by message."""

    def __init__(self, port: int, token: str | None) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        self.call: Any = self.channel.stream_stream(
            CONNECT,
            request_serializer=pb.WorkerMessage.SerializeToString,
            response_deserializer=pb.MasterMessage.FromString,
        )(metadata=metadata)

    async def hello(self, **fields: Any) -> pb.MasterMessage:
        await self.call.write(pb.WorkerMessage(hello=pb.Hello(**fields)))
        return await self.read()

    async def send(self, **message: Any) -> None:
        await self.call.write(pb.WorkerMessage(**message))

    async def read(self) -> Any:
        async with asyncio.timeout(10):
            return await self.call.read()

    async def ended_with(self) -> grpc.StatusCode:
        """Read until the master ends the stream; its status."""
        try:
            async with asyncio.timeout(10):
                while await self.call.read() is not grpc.aio.EOF:
                    pass
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return await self.call.code()

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()


@pytest.fixture
async def joined(tmp_path: Path) -> AsyncIterator[tuple[Grid, str]]:
    """A master that requires a join token, and the token (all a rogue has)."""
    token = new_token()
    grid = Grid(tmp=tmp_path)
    await grid.start_master(tokens=[TokenEntry.of("fleet", "worker", digest(token))])
    try:
        yield grid, token
    finally:
        await grid.close()


async def test_a_second_process_cannot_take_a_workers_identity_and_forge_its_result(
    joined: tuple[Grid, str],
) -> None:
    grid, token = joined
    await grid.add_worker("w1", slots=1, join_token=token)
    task = await grid.submit(cmd="sleep 2; echo real", shell=True)
    await grid.wait_state(task["id"], "running")
    ref = pb.AttemptRef(task_id=task["id"], attempt=1)
    for binds, running in ((True, [ref]), (False, [ref]), (True, [])):
        rogue = Rogue(grid.grpc_port, token)

        async def forge(rogue: Rogue = rogue, binds: bool = binds, running: Any = running) -> None:
            await rogue.hello(
                worker_id="w1", slots=1, running=running, binds_identity=binds, resumed=True
            )
            # had it been welcomed: report the victim's attempt as done, with forged output
            await rogue.send(output=pb.Output(ref=ref, stdout=b"forged\n"))
            await rogue.send(
                finished=pb.Finished(
                    ref=ref, outcome=pb.OUTCOME_EXITED, has_exit_code=True, exit_code=0,
                    started_at_ms=now_ms() - 10, finished_at_ms=now_ms(),
                )
            )  # fmt: skip
            await rogue.read()

        try:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await forge()
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "bound to the worker that first joined" in (refused.value.details() or "")
        finally:
            await rogue.close()
    # the victim kept its task (not lost, not cancelled) and its real result
    done = await grid.wait(task["id"], timeout=30)
    assert (done["state"], done["worker_id"], done["attempt"]) == ("succeeded", "w1", 1)
    assert (await grid.output(task["id"]))["stdout"]["text"] == "real\n"
    # the real worker itself reconnects as before: its data dir holds the secret
    secret = (grid.tmp / "workers" / "w1" / "identity-secret").read_text().strip()
    assert len(secret) >= 40
    assert (grid.tmp / "workers" / "w1" / "identity-secret").stat().st_mode & 0o777 == 0o600
    rogue = Rogue(grid.grpc_port, token)
    try:
        welcome = await rogue.hello(worker_id="w1", slots=1, identity_secret=secret)
        assert welcome.WhichOneof("msg") == "welcome"
    finally:
        await rogue.close()


BAD_FINISHES = [
    ("a finish before the epoch", {"finished_at_ms": -9_000_000_000_000_000_000}),
    ("a start far in the future", {"started_at_ms": 4102444800000}),
    ("a finish before its start", {"order": True}),
    ("a NUL in error", {"error": "boom\x00hidden"}),
    ("an exit code out of range", {"has_exit_code": True, "exit_code": 300}),
    ("a signal out of range", {"signal": 999}),
    ("an unknown outcome", {"outcome": 77}),
]


@pytest.mark.parametrize(("what", "bad"), BAD_FINISHES, ids=[w for w, _ in BAD_FINISHES])
async def test_out_of_range_reports_end_the_stream_and_are_never_stored(
    joined: tuple[Grid, str], what: str, bad: dict[str, Any]
) -> None:
    grid, token = joined
    rogue = Rogue(grid.grpc_port, token)
    try:
        assert (await rogue.hello(worker_id="rogue", slots=1)).WhichOneof("msg") == "welcome"
        task = await grid.submit(cmd="true")
        assign = await rogue.read()
        while assign.WhichOneof("msg") != "assign":
            assign = await rogue.read()
        ref = assign.assign.ref
        fields: dict[str, Any] = {
            "ref": ref, "outcome": pb.OUTCOME_EXITED, "has_exit_code": True, "exit_code": 0,
            "started_at_ms": now_ms() - 5, "finished_at_ms": now_ms(),
        }  # fmt: skip
        if bad.pop("order", False):
            fields["started_at_ms"], fields["finished_at_ms"] = now_ms(), now_ms() - 60_000
        fields.update(bad)
        await rogue.send(finished=pb.Finished(**fields))
        assert await rogue.ended_with() == grpc.StatusCode.INVALID_ARGUMENT, what
    finally:
        await rogue.close()
    # nothing of it was stored, and every read of the task still answers
    stored = await grid.task(task["id"])
    assert stored["state"] in ("assigned", "lost"), stored
    assert stored["exit_code"] is None
    assert stored["finished_at"] is None or stored["state"] == "lost"
    listing = await grid.api.get("/v1/tasks")
    assert listing.status_code == 200
    assert (await grid.api.get("/v1/tasks?worker=rogue")).status_code == 200


async def test_records_broken_before_the_checks_are_repaired_on_start(tmp_path: Path) -> None:
    """A database written by an earlier version, holding a worker's absurd report."""
    grid = Grid(tmp=tmp_path)
    await grid.start_master()
    try:
        await grid.add_worker("w1")
        task = await grid.submit(cmd="true")
        await grid.wait(task["id"])
    finally:
        await grid.close()
    db = tmp_path / "master" / "gridrun.db"
    with sqlite3.connect(db) as conn:  # as the earlier version stored it
        conn.execute(
            "UPDATE attempts SET finished_at = -9000000000000000000, error = 'a' || char(0)"
        )
        conn.execute("UPDATE tasks SET finished_at = 9000000000000000000")
        for table in ("chunks", "task_files", "task_inputs", "inputs"):  # v21
            conn.execute(f"DROP TABLE {table}")
        for table in ("alloc_leader", "allocations", "alloc_queues"):  # v20
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DROP INDEX tasks_by_job_index")  # v19
        conn.execute("ALTER TABLE tasks DROP COLUMN job_index")
        conn.execute("ALTER TABLE output DROP COLUMN marks")  # v18
        conn.execute("DROP INDEX tasks_by_key")  # v17
        conn.execute("DROP TABLE concurrency_keys")
        conn.execute("ALTER TABLE schedules DROP COLUMN over_quota")
        conn.execute(
            "CREATE UNIQUE INDEX tasks_by_key ON tasks (idempotency_key)"
            " WHERE idempotency_key IS NOT NULL"
        )
        for index in ("tasks_lanes", "tasks_owners", "tasks_queues", "tasks_by_owner"):
            conn.execute(f"DROP INDEX {index}")  # v14
        conn.execute("ALTER TABLE tasks DROP COLUMN retain_ms")  # v15
        conn.execute("DROP TABLE expired")
        for column in ("lane", "queue", "owner"):
            conn.execute(f"ALTER TABLE tasks DROP COLUMN {column}")
        conn.execute("DROP TABLE quotas")
        conn.execute("DROP TABLE worker_secrets")
        conn.execute("ALTER TABLE tasks RENAME COLUMN labels TO selector")  # v12
        for column in ("cpu_s", "peak_memory_bytes", "io_read_bytes", "io_write_bytes"):
            conn.execute(f"ALTER TABLE attempts DROP COLUMN {column}")  # v13
        conn.execute("ALTER TABLE workers DROP COLUMN containment")
        conn.execute("ALTER TABLE attempts DROP COLUMN announces")  # v16
        conn.execute("ALTER TABLE tasks DROP COLUMN cpu_s")
        conn.execute("ALTER TABLE tasks DROP COLUMN peak_memory_bytes")
        conn.execute("PRAGMA user_version = 10")
    grid = Grid(tmp=tmp_path)
    await grid.start_master()
    try:
        response = await grid.api.get(f"/v1/tasks/{task['id']}")
        assert response.status_code == 200, response.text
        assert response.json()["finished_at"] is None
        assert (await grid.api.get("/v1/tasks")).status_code == 200
    finally:
        await grid.close()


async def test_a_worker_that_takes_work_and_never_reports_loses_it_and_is_quarantined(
    tmp_path: Path,
) -> None:
    token = new_token()
    grid = Grid(tmp=tmp_path)
    await grid.start_master(
        tokens=[TokenEntry.of("fleet", "worker", digest(token))],
        start_deadline_s=1.5,
        quarantine_after=2,
        max_worker_slots=64,
        max_worker_gpus=8,
    )
    rogue = Rogue(grid.grpc_port, token)
    try:
        welcome = await rogue.hello(
            worker_id="blackhole", slots=4096, resources=pb.Resources(gpus=1_000_000)
        )
        assert welcome.WhichOneof("msg") == "welcome"
        assigned: list[str] = []

        async def swallow() -> None:  # take every assignment and report nothing
            while (msg := await rogue.call.read()) is not grpc.aio.EOF:
                if msg.WhichOneof("msg") == "assign":
                    assigned.append(msg.assign.ref.task_id)

        async def beat() -> None:  # while looking alive
            while True:
                await rogue.send(heartbeat=pb.Heartbeat(free_slots=64))
                await asyncio.sleep(0.2)

        swallowing = [asyncio.create_task(swallow()), asyncio.create_task(beat())]
        tasks = await grid.submit_many(
            [{"cmd": "echo ok", "max_attempts": 3, "retry": {"initial_s": 0}}] * 20
        )
        await eventually_async(lambda: len(assigned) >= 20, 10)
        workers = (await grid.api.get("/v1/workers")).json()["workers"]
        (listed,) = [w for w in workers if w["id"] == "blackhole"]
        assert (listed["slots"], listed["resources"]["gpus"]) == (64, 8)  # capped
        # an honest worker joins; the swallowed tasks come back to it within the deadline
        await grid.add_worker("honest", slots=4, join_token=token)
        for task in tasks:
            done = await grid.wait(task["id"], timeout=30)
            assert (done["state"], done["worker_id"]) == ("succeeded", "honest"), done
            assert "blackhole missed a deadline" in done["attempts"][0]["error"]

        async def quarantined() -> str | None:
            workers = (await grid.api.get("/v1/workers")).json()["workers"]
            return next(w["quarantined"] for w in workers if w["id"] == "blackhole")

        assert "missed" in (await eventually_async(quarantined, 10) or "")
        before = len(assigned)
        more = await grid.submit_many([{"cmd": "true"}] * 10)
        for task in more:
            assert (await grid.wait(task["id"]))["worker_id"] == "honest"
        assert len(assigned) == before  # nothing new for the quarantined worker
        for part in swallowing:
            part.cancel()
        await asyncio.gather(*swallowing, return_exceptions=True)
    finally:
        await rogue.close()
        await grid.close()


async def test_a_worker_that_joined_once_and_vanished_is_forgotten(tmp_path: Path) -> None:
    grid = Grid(tmp=tmp_path)
    await grid.start_master(forget_workers_after_s=1.0, liveness_timeout_s=1.0)
    try:
        ghost = Rogue(grid.grpc_port, None)
        assert (await ghost.hello(worker_id="ghost", slots=1)).WhichOneof("msg") == "welcome"
        await ghost.close()
        await grid.add_worker("stays")

        async def listed() -> set[str]:
            return {w["id"] for w in (await grid.api.get("/v1/workers")).json()["workers"]}

        assert "ghost" in await listed()
        await eventually_async(lambda: _without(listed, "ghost"), 15, 0.2)
        assert "stays" in await listed()  # a connected worker is never forgotten
        # and its id is free again: a new process may join with it
        again = Rogue(grid.grpc_port, None)
        try:
            welcome = await again.hello(worker_id="ghost", slots=1, binds_identity=True)
            assert welcome.welcome.identity_secret
        finally:
            await again.close()
    finally:
        await grid.close()


async def _without(listed: Any, worker_id: str) -> bool:
    return worker_id not in await listed()


async def test_a_quarantined_worker_back_under_a_new_id_is_still_quarantined(
    tmp_path: Path,
) -> None:
    """Quarantine follows the credential: a rogue that missed its deadlines comes back with
    the same join token from the same host under another id, and gets no work (it black-holed
    8 of the next 10 tasks); the honest worker already there keeps working."""
    token = new_token()
    grid = Grid(tmp=tmp_path)
    await grid.start_master(
        tokens=[TokenEntry.of("fleet", "worker", digest(token))],
        start_deadline_s=1.0,
        quarantine_after=1,
    )
    rogues: list[Rogue] = []
    assigned: dict[str, list[str]] = {}

    async def swallowing(worker_id: str) -> asyncio.Task[None]:
        rogue = Rogue(grid.grpc_port, token)
        rogues.append(rogue)
        welcome = await rogue.hello(worker_id=worker_id, slots=4, binds_identity=True)
        assert welcome.WhichOneof("msg") == "welcome"
        taken = assigned.setdefault(worker_id, [])

        async def swallow() -> None:
            while (msg := await rogue.call.read()) is not grpc.aio.EOF:
                if msg.WhichOneof("msg") == "assign":
                    taken.append(msg.assign.ref.task_id)

        return asyncio.create_task(swallow())

    parts = []
    try:
        parts.append(await swallowing("blackhole"))
        first = await grid.submit_many([{"cmd": "true", "max_attempts": 2}] * 4)
        await eventually_async(lambda: len(assigned["blackhole"]) >= 4, 10)
        await grid.add_worker("honest", slots=2, join_token=token)
        for task in first:
            assert (await grid.wait(task["id"], timeout=30))["worker_id"] == "honest"

        async def reason(worker_id: str) -> str | None:
            workers = (await grid.api.get("/v1/workers")).json()["workers"]
            return next((w["quarantined"] for w in workers if w["id"] == worker_id), None)

        assert "missed" in (await eventually_async(lambda: reason("blackhole"), 10) or "")
        await rogues[0].close()
        parts.append(await swallowing("blackhole-2"))  # the same rogue, a new id
        said = await eventually_async(lambda: reason("blackhole-2"), 10)
        assert "credential and host of a quarantined worker" in (said or "")
        more = await grid.submit_many([{"cmd": "true"}] * 10)
        for task in more:
            assert (await grid.wait(task["id"], timeout=30))["worker_id"] == "honest"
        assert assigned["blackhole-2"] == []
    finally:
        for part in parts:
            part.cancel()
        await asyncio.gather(*parts, return_exceptions=True)
        for rogue in rogues:
            await rogue.close()
        await grid.close()


async def test_the_ids_a_join_token_mints_are_bounded_and_unused_ones_forgotten_soon(
    tmp_path: Path,
) -> None:
    """1,500 fake ids from one token stayed bound and listed for 7 days: now a token may have
    `max_workers_per_token` bound, and an id that never ran anything is forgotten once
    offline for `forget_unused_workers_after_s` (one that ran something is kept)."""
    token = new_token()
    grid = Grid(tmp=tmp_path)
    await grid.start_master(
        tokens=[TokenEntry.of("fleet", "worker", digest(token))],
        max_workers_per_token=3,
        forget_unused_workers_after_s=1.0,
        liveness_timeout_s=1.0,
    )
    try:
        await grid.add_worker("real", slots=1, join_token=token)
        done = await grid.wait((await grid.submit(cmd="true"))["id"])
        assert done["worker_id"] == "real"
        fakes = []
        for i in range(2):
            fake = Rogue(grid.grpc_port, token)
            welcome = await fake.hello(worker_id=f"fake-{i}", slots=1, binds_identity=True)
            assert welcome.WhichOneof("msg") == "welcome"
            fakes.append(fake)
        over = Rogue(grid.grpc_port, token)
        await over.call.write(
            pb.WorkerMessage(hello=pb.Hello(worker_id="fake-2", slots=1, binds_identity=True))
        )
        assert await over.ended_with() == grpc.StatusCode.PERMISSION_DENIED
        assert "max-workers-per-token" in (await over.call.details() or "")
        await over.close()
        for fake in fakes:
            await fake.close()
        real = grid.agents[0].agent
        await grid.stop_worker(real)

        async def listed() -> set[str]:
            return {w["id"] for w in (await grid.api.get("/v1/workers")).json()["workers"]}

        await eventually_async(lambda: _without(listed, "fake-0"), 20, 0.2)
        assert "fake-1" not in await listed()
        assert "real" in await listed()  # it ran a task: kept (for forget_workers_after_s)
        again = Rogue(grid.grpc_port, token)  # room again for a new id
        try:
            welcome = await again.hello(worker_id="fake-3", slots=1, binds_identity=True)
            assert welcome.WhichOneof("msg") == "welcome"
        finally:
            await again.close()
    finally:
        await grid.close()
