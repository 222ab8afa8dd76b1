"""Prefetch (issue 20): a worker holds assignments beyond its free slots and starts them as
slots free. Placement stays honest about held tasks; a higher-priority task takes a held
one's place; a worker of the previous protocol gets one message per command, nothing held, and
the old `lost` semantics. Real master, real workers, real gRPC (crash drills: the system tests).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from gridrun._proto import worker_pb2 as pb
from gridrun.cli import render
from tests.helpers import eventually_async
from tests.integration.conftest import Grid
from tests.integration.test_rogue_worker import Rogue, now_ms

pytestmark = pytest.mark.timeout(120)


def gated(gate: Path, mark: Path | None = None) -> str:
    """A shell line that (records that it ran and) waits for `gate` to exist."""
    ran = f'echo "$GRIDRUN_TASK_ID" >> {mark}; ' if mark else ""
    return f"{ran}while [ ! -e {gate} ]; do sleep 0.01; done"


async def test_a_higher_priority_task_takes_the_place_of_a_held_one(
    grid: Grid, tmp_path: Path
) -> None:
    gate, order = tmp_path / "gate", tmp_path / "order"
    await grid.add_worker("w1", slots=1, prefetch=1)
    blocker = await grid.submit(cmd=gated(gate), shell=True)
    await grid.wait_state(blocker["id"], "running")
    low = await grid.submit(cmd=f"echo low >> {order}", shell=True, priority=0)
    await grid.wait_state(low["id"], "assigned")  # held by w1, behind the blocker
    high = await grid.submit(cmd=f"echo high >> {order}", shell=True, priority=10)
    # the low one is given back unstarted (not a try) and the high one held instead
    await grid.wait_state(high["id"], "assigned")
    assert (await grid.task(low["id"]))["state"] == "queued"
    gate.touch()
    assert (await grid.wait(high["id"]))["state"] == "succeeded"
    final = await grid.wait(low["id"])
    assert final["state"] == "succeeded"  # (its one try was not spent by the revoke)
    assert order.read_text().split() == ["high", "low"]
    attempts = final["attempts"]
    assert [a["state"] for a in attempts] == ["queued", "succeeded"]
    assert "given back unstarted" in attempts[0]["error"]


async def test_a_free_slot_elsewhere_wins_over_a_held_place(grid: Grid, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    await grid.add_worker("busy", slots=1, prefetch=4)
    blocker = await grid.submit(cmd=gated(gate), shell=True)  # (the only worker yet)
    await grid.wait_state(blocker["id"], "running")
    await grid.add_worker("idle", slots=1, prefetch=4)
    for _ in range(3):  # one at a time: each finds `idle` free again
        task = await grid.submit(cmd="true", shell=True)
        assert (await grid.wait(task["id"]))["worker_id"] == "idle"
    gate.touch()


async def test_the_workers_list_counts_held_tasks_as_assigned_not_running(
    grid: Grid, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    await grid.add_worker("w1", slots=2, prefetch=2)
    tasks = [await grid.submit(cmd=gated(gate), shell=True) for _ in range(5)]
    for task in tasks[:2]:
        await grid.wait_state(task["id"], "running")
    for task in tasks[2:4]:
        await grid.wait_state(task["id"], "assigned")  # held for a slot

    async def listed() -> dict[str, object] | None:
        (worker,) = (await grid.api.get("/v1/workers")).json()["workers"]
        return worker if worker["assigned"] == 2 else None

    worker = await eventually_async(listed, 10)
    assert (worker["running"], worker["assigned"], worker["slots"]) == (2, 2, 2)
    headers, rows = render.worker_rows([worker])  # type: ignore[list-item]
    shown = dict(zip(headers, rows[0], strict=True))
    assert (shown["RUNNING"], shown["ASSIGNED"], shown["SLOTS"]) == ("2", "2", "2")
    stats = (await grid.api.get("/v1/stats")).json()
    assert stats["tasks"]["running"] == 2
    gate.touch()
    for task in tasks:
        assert (await grid.wait(task["id"]))["state"] == "succeeded"
    (worker,) = (await grid.api.get("/v1/workers")).json()["workers"]
    assert (worker["running"], worker["assigned"]) == (0, 0)


async def test_held_tasks_count_against_quotas_and_resources(grid: Grid, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    # (placement by the asks only: the test is about holding, on machines without cgroups too)
    await grid.add_worker("w1", slots=1, prefetch=8, cpus=4, enforce_asks=False)
    ops = grid.http
    assert ops is not None
    assert (await ops.put("/v1/quotas/owner/anonymous", json={"max_running": 3})).is_success
    tasks = [await grid.submit(cmd=gated(gate), shell=True) for _ in range(5)]
    await grid.wait_state(tasks[0]["id"], "running")

    async def settled() -> list[str] | None:
        states = [(await grid.task(t["id"]))["state"] for t in tasks]
        return states if states.count("assigned") == 2 else None

    # one runs, two are held: the quota of 3 counts held ones as running
    states = await eventually_async(settled, 10)
    await asyncio.sleep(0.3)
    assert [(await grid.task(t["id"]))["state"] for t in tasks] == states
    assert states.count("queued") == 2
    assert (await ops.put("/v1/quotas/owner/anonymous", json={})).is_success
    # 3 CPUs each on a 4-CPU worker: what runs and what is held each take their ask
    gate.touch()
    for task in tasks:
        assert (await grid.wait(task["id"]))["state"] == "succeeded"
    gate.unlink()
    big = [await grid.submit(cmd=gated(gate), shell=True, cpu=3) for _ in range(2)]
    await grid.wait_state(big[0]["id"], "running")
    await asyncio.sleep(0.5)
    assert (await grid.task(big[1]["id"]))["state"] == "queued"  # not held: no CPUs for it
    gate.touch()
    for task in big:
        assert (await grid.wait(task["id"]))["state"] == "succeeded"


async def test_a_worker_of_the_previous_protocol_gets_single_messages_and_nothing_held(
    grid: Grid,
) -> None:
    await grid.stop_master()
    await grid.start_master(liveness_timeout_s=1.0)
    old = Rogue(grid.grpc_port, None)
    try:
        welcome = await old.hello(worker_id="old", hostname="h", slots=1, version="0.9")
        assert welcome.WhichOneof("msg") == "welcome"
        tasks = [await grid.submit(argv=["true"]) for _ in range(3)]
        first = await old.read()
        assert first.WhichOneof("msg") == "assign"  # a plain Assign, as it always was
        ref = first.assign.ref
        await asyncio.sleep(0.5)
        for task in tasks:  # one slot, nothing held beyond it
            expected = "assigned" if task["id"] == ref.task_id else "queued"
            assert (await grid.task(task["id"]))["state"] == expected
        await old.send(started=pb.Started(ref=ref, started_at_ms=now_ms(), pid=1))
        held = next(t for t in tasks if t["id"] == ref.task_id)
        await grid.wait_state(held["id"], "running")
        # a batch from a worker that did not offer them ends its stream
        await old.send(batch=pb.WorkerBatch(messages=[]))
        assert await old.ended_with() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await old.close()
    # the attempt it had started is lost (the old semantics), not run again
    assert (await grid.wait(held["id"]))["state"] == "lost"


async def test_an_unstarted_attempt_of_an_announcing_worker_goes_back_when_it_vanishes(
    grid: Grid,
) -> None:
    await grid.stop_master()
    await grid.start_master(liveness_timeout_s=1.0)
    rogue = Rogue(grid.grpc_port, None)
    try:
        hello = {"worker_id": "new", "hostname": "h", "slots": 1, "version": "0.10"}
        await rogue.hello(**hello, batches=True, announces_starts=True, prefetch=1)
        tasks = [await grid.submit(argv=["true"]) for _ in range(2)]
        assigned: list[pb.Assign] = []
        while len(assigned) < 2:  # one for its slot, one held
            message = await rogue.read()
            items = message.batch.messages if message.WhichOneof("msg") == "batch" else [message]
            assigned += [m.assign for m in items if m.WhichOneof("msg") == "assign"]
        started, unstarted = assigned
        report = pb.Started(ref=started.ref, started_at_ms=now_ms())
        await rogue.send(batch=pb.WorkerBatch(messages=[pb.WorkerMessage(started=report)]))
        await grid.wait_state(started.ref.task_id, "running")
    finally:
        await rogue.close()  # and it never comes back
    assert (await grid.wait(started.ref.task_id))["state"] == "lost"
    await grid.add_worker("other", slots=1)
    back = await grid.wait(unstarted.ref.task_id)
    assert (back["state"], back["worker_id"]) == ("succeeded", "other")
    assert {t["id"] for t in tasks} == {started.ref.task_id, unstarted.ref.task_id}


async def test_a_held_task_waits_past_the_start_deadline_without_being_lost(
    grid: Grid, tmp_path: Path
) -> None:
    # a held task cannot start before a slot frees: its start deadline counts from then
    await grid.stop_master()
    await grid.start_master(start_deadline_s=1.0, quarantine_after=1)
    gate = tmp_path / "gate"
    await grid.add_worker("w1", slots=1, prefetch=1)
    long = await grid.submit(cmd=gated(gate), shell=True, timeout_s=30)
    await grid.wait_state(long["id"], "running")
    held = await grid.submit(cmd="sleep 0.2", shell=True, timeout_s=30)
    await grid.wait_state(held["id"], "assigned")
    await asyncio.sleep(2.5)  # well past the start deadline, and the master's checks
    assert (await grid.task(held["id"]))["state"] == "assigned"
    gate.touch()
    assert (await grid.wait(long["id"]))["state"] == "succeeded"
    assert (await grid.wait(held["id"]))["state"] == "succeeded"
    workers = {w["id"]: w for w in await grid.client.workers()}
    assert workers["w1"]["state"] == "online"  # not quarantined
    after = await grid.submit(argv=["true"])
    assert (await grid.wait(after["id"]))["state"] == "succeeded"
