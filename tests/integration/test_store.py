"""The `Store` contract, one suite run against both backends: a real SQLite file and a real
PostgreSQL database (created and dropped per test). Commits, fencing, claims, lost attempts,
leases."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from gridrun.allocating import Allocation, AllocQueue, AllocState, QueueConfig, QueueState
from gridrun.dispatching import Active, Candidate, Placed, Quota
from gridrun.errors import (
    AllocQueueExists,
    AllocQueueNotFound,
    AmbiguousId,
    InputNotUploaded,
    InvalidTransition,
    JobNotFound,
    ScheduleNotFound,
    TaskNotFound,
    WorkerNotFound,
)
from gridrun.files import FileState, file_blob, input_blob
from gridrun.model import (
    AttemptRef,
    Concurrency,
    InputFile,
    Outcome,
    Report,
    RetryPolicy,
    Schedule,
    Stream,
    TaskState,
    Usage,
    WorkerInfo,
    WorkerState,
)
from gridrun.resources import Resources
from gridrun.spec import make_spec
from gridrun.store import Finished, LaneRead, NewTask, Output, Started, Store, TaskFilter
from gridrun.store.files import input_key
from gridrun.store.postgres import PostgresStore
from gridrun.store.sqlite import SqliteStore
from tests import pg
from tests.helpers import claim

WORKERS = ("w1", "w2", "w3")


def worker(worker_id: str, state: WorkerState = WorkerState.ONLINE) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id, hostname="h", labels={}, slots=2, state=state, version="t", legacy=False,
        connected_at=1, last_seen=1,
    )  # fmt: skip


@asynccontextmanager
async def unopened(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    if kind == "sqlite":
        yield SqliteStore(tmp_path / "db" / "gridrun.db", origin="m1")
    else:
        async with pg.database() as url:  # created now, dropped after
            yield PostgresStore(url, origin="m1")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.pg)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store on each backend, its workers w1..w3 connected (leased to it until t=100)."""
    async with unopened(request.param, tmp_path) as s:
        await s.open()
        try:
            for w in WORKERS:
                await s.workers.upsert_worker(worker(w), lease_until=100)
            yield s
        finally:
            await s.close()


async def add(store: Store, *ids: str, priority: int = 0, **spec: object) -> None:
    task_spec = make_spec(cmd="true", priority=priority, **spec)  # type: ignore[arg-type]
    await store.tasks.add_tasks([NewTask(i, task_spec) for i in ids], now=1)


async def test_tasks_keep_their_spec_and_order(store: Store) -> None:
    await add(store, "a", "b", labels={"gpu": "yes"}, name="job")
    a, b = await store.tasks.get_task("a"), await store.tasks.get_task("b")
    assert (a.spec.labels, a.spec.name, a.state) == ({"gpu": "yes"}, "job", TaskState.QUEUED)
    assert a.seq < b.seq


async def test_queue_order_and_resume_after(store: Store) -> None:
    await add(store, "low1", "low2")
    await add(store, "high", priority=5)
    first = await store.dispatch.queued(2, None, now=10**13)
    assert [c.task_id for c in first] == ["high", "low1"]
    rest = await store.dispatch.queued(10, (first[-1].priority, first[-1].seq), now=10**13)
    assert [c.task_id for c in rest] == ["low2"]


async def test_the_queue_by_lane(store: Store) -> None:
    """Each lane (one owner's tasks in one queue of one shape) is listed once however many
    tasks share it, in key order, resumable; a lane's head is read in priority order; the
    planner sees what runs (per owner, queue, concurrency key) and the quotas; claiming the
    head of one lane leaves the others untouched; a lane with nothing queued is gone."""
    gpu = make_spec(cmd="true", resources=Resources(gpus=8))
    await store.tasks.add_tasks([NewTask(f"gpu{i}", gpu) for i in range(3000)], now=1)
    await add(store, "plain1", "plain2")
    await add(store, "urgent", priority=5)
    await add(store, "zoned", labels={"zone": "b"})
    await add(store, "bobs", submitted_by="bob", queue="nightly")
    await add(store, "deploy1", "deploy2", concurrency_key="deploy", concurrency_limit=1)
    lanes = await store.dispatch.queued_lanes("", 10)
    assert len(lanes) == 5
    assert [lane.key for lane in lanes] == sorted(lane.key for lane in lanes)
    by = {(lane.probe.owner, lane.probe.queue, lane.probe.resources.gpus,
           tuple(lane.probe.labels), lane.probe.concurrency): lane for lane in lanes}  # fmt: skip
    plain = by["anonymous", "default", 0, (), None]
    assert by["anonymous", "default", 8, (), None]
    assert by["anonymous", "default", 0, ("zone",), None].probe.labels == {"zone": "b"}
    assert by["bob", "nightly", 0, (), None]
    deploy = by["anonymous", "default", 0, (), Concurrency("deploy", 1, "anonymous")]
    rest = await store.dispatch.queued_lanes(lanes[0].key, 10)
    assert [lane.key for lane in rest] == [lane.key for lane in lanes[1:]]
    assert len(await store.dispatch.queued_lanes("", 2)) == 2
    await store.dispatch.set_quota(Quota("owner", "bob", max_queued=5, max_running=2))
    seen: list[tuple[Active, list[Quota]]] = []

    def first_two(
        heads: dict[str, list[Candidate]], active: Active, quotas: Sequence[Quota]
    ) -> Placed:
        seen.append((active, list(quotas)))
        return [(lane[0], "w1") for lane in heads.values()]

    done = await store.dispatch.plan_and_claim([plain, deploy], 10, 10**13, first_two)
    assert [c.task_id for c in done.heads[plain.key]] == ["urgent", "plain1", "plain2"]
    assert [c.task_id for c in done.heads[deploy.key]] == ["deploy1", "deploy2"]
    assert [t.id for t in done.claimed] == ["urgent", "deploy1"]
    limits = {"anonymous/deploy": 1}  # (the key is its owner's: counted under its scope)
    assert seen[0] == (Active({}, {}, {}, limits), [Quota("owner", "bob", 5, 2)])
    await store.dispatch.plan_and_claim([plain], 10, 10**13, first_two)
    assert seen[1][0] == Active({"anonymous": 2}, {"default": 2}, {"anonymous/deploy": 1})
    queued = 3000 + 3  # the gpu tasks, plain2, zoned, deploy2
    assert await store.dispatch.queued_count("owner", "anonymous", 10_000) == queued
    assert (
        await store.dispatch.queued_count("owner", "anonymous", 100) == 100
    )  # counts up to the limit
    assert await store.dispatch.queued_count("queue", "nightly", 10) == 1
    await store.dispatch.set_quota(Quota("owner", "bob"))  # no limit left: removed
    assert await store.dispatch.quotas() == []
    await store.tasks.request_cancel("zoned", now=2)
    left = {lane.probe.labels.get("zone") for lane in await store.dispatch.queued_lanes("", 10)}
    assert "b" not in left
    # a pass lists the lanes and looks into those it can take, in the same transaction
    listed = await store.dispatch.queued_lanes("", 10)
    bobs = LaneRead("", 10, lambda lane: lane.probe.owner == "bob")
    done = await store.dispatch.plan_and_claim(bobs, 10, 10**13, first_two)
    assert [lane.key for lane in done.lanes] == [lane.key for lane in listed]
    assert [lane.probe.owner for lane in listed if lane.key in done.heads] == ["bob"]
    assert [t.id for t in done.claimed] == ["bobs"]
    nothing = await store.dispatch.plan_and_claim(
        LaneRead("", 10, lambda _: False), 10, 10**13, first_two
    )
    assert (len(nothing.lanes), nothing.heads, nothing.claimed) == (len(listed) - 1, {}, [])


async def test_claim_only_takes_queued_tasks_and_bumps_the_attempt(store: Store) -> None:
    await add(store, "a", "b")
    await store.tasks.request_cancel("b", now=2)
    claimed = await claim(store, [("a", "w1"), ("b", "w1")], now=3)
    assert [(t.id, t.attempt, t.worker_id, t.state) for t in claimed] == [
        ("a", 1, "w1", TaskState.ASSIGNED)
    ]
    assert await claim(store, [("a", "w2")], now=4) == []  # no double claim


async def test_reports_are_fenced_by_attempt_and_worker(store: Store) -> None:
    await add(store, "a")
    await claim(store, [("a", "w1")], now=1)
    ref = AttemptRef("a", 1)
    assert not await store.attempts.record_start(ref, "w2", 5)
    assert not await store.attempts.record_start(AttemptRef("a", 2), "w1", 5)
    assert await store.attempts.record_start(ref, "w1", 5)
    assert not await store.attempts.append_output(ref, "w2", [(1, 0, b"x")], cap=100)
    assert await store.attempts.append_output(ref, "w1", [(1, 0, b"hi")], cap=100)
    stale = await store.attempts.record_finish(
        ref, "w2", Report(Outcome.EXITED, exit_code=0), now=6
    )
    assert not stale.applied
    done = await store.attempts.record_finish(ref, "w1", Report(Outcome.EXITED, exit_code=4), now=7)
    assert done.applied
    assert done.task is not None
    assert done.task.state is TaskState.FAILED
    assert done.task.exit_code == 4
    again = await store.attempts.record_finish(
        ref, "w1", Report(Outcome.EXITED, exit_code=0), now=8
    )
    assert not again.applied  # a duplicate Finished is dropped
    task = await store.tasks.get_task("a")
    assert task.state is TaskState.FAILED
    assert task.exit_code == 4
    assert (await store.tasks.get_output("a")).stdout.data == b"hi"


async def test_counts_by_state_follow_every_transition(store: Store) -> None:
    async def counts() -> dict[TaskState, int]:
        counted = await store.tasks.count_by_state()
        assert all(n > 0 for n in counted.values()), counted  # only states that have tasks
        return counted

    assert await counts() == {}
    await add(store, "a", "b", "c", "d", "e")
    with pytest.raises((sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
        await add(store, "f", "a")  # a taken id: the batch is undone, and so is its count
    assert await counts() == {TaskState.QUEUED: 5}
    await store.fold_counts()  # PostgreSQL: the changes so far move into the totals
    assert await counts() == {TaskState.QUEUED: 5}
    await claim(store, [("a", "w1"), ("b", "w1"), ("c", "w2")], now=2)
    await store.attempts.record_start(AttemptRef("a", 1), "w1", 3)
    await store.tasks.request_cancel("d", 3)
    assert await counts() == {
        TaskState.QUEUED: 1,
        TaskState.ASSIGNED: 2,
        TaskState.RUNNING: 1,
        TaskState.CANCELLED: 1,
    }
    await store.attempts.record_finish(
        AttemptRef("a", 1), "w1", Report(Outcome.EXITED, exit_code=0), 4
    )
    await store.attempts.record_finish(
        AttemptRef("b", 1), "w1", Report(Outcome.EXITED, exit_code=2), 4
    )
    await store.attempts.record_finish(AttemptRef("c", 1), "w2", Report(Outcome.NO_SLOT), 4)
    await store.attempts.mark_lost(
        "w9", [], now=5, reason="never here"
    )  # nothing of its own: no change
    expected = {
        TaskState.QUEUED: 2,
        TaskState.SUCCEEDED: 1,
        TaskState.FAILED: 1,
        TaskState.CANCELLED: 1,
    }
    assert await counts() == expected
    await store.fold_counts()
    assert await counts() == expected
    await store.fold_counts()  # nothing left to fold
    assert await counts() == expected
    listed = (await store.tasks.list_tasks(TaskFilter(), limit=100, before=None)).tasks
    assert {s: sum(t.state is s for t in listed) for s in expected} == expected


async def test_no_slot_puts_the_task_back_in_the_queue(store: Store) -> None:
    await add(store, "a")
    await claim(store, [("a", "w1")], now=1)
    result = await store.attempts.record_finish(
        AttemptRef("a", 1), "w1", Report(Outcome.NO_SLOT), 2
    )
    assert result.task is not None
    assert result.task.state is TaskState.QUEUED
    assert [t.attempt for t in await claim(store, [("a", "w2")], now=3)] == [2]


async def test_mark_lost_keeps_the_attempts_the_worker_still_holds(store: Store) -> None:
    await add(store, "a", "b", "c")
    await claim(store, [("a", "w1"), ("b", "w1"), ("c", "w2")], now=1)
    lost = await store.attempts.mark_lost("w1", [AttemptRef("a", 1)], now=2, reason="gone")
    assert [t.id for t in lost] == ["b"]
    assert (await store.tasks.get_task("b")).state is TaskState.LOST
    assert (await store.tasks.get_task("a")).state is TaskState.ASSIGNED
    assert (await store.tasks.get_task("c")).state is TaskState.ASSIGNED


async def test_cancel_rules(store: Store) -> None:
    await add(store, "q", "r")
    assert (await store.tasks.request_cancel("q", 1)).state is TaskState.CANCELLED
    await claim(store, [("r", "w1")], now=1)
    flagged = await store.tasks.request_cancel("r", 2)
    assert flagged.state is TaskState.ASSIGNED
    assert flagged.cancel_requested
    with pytest.raises(InvalidTransition):
        await store.tasks.request_cancel("q", 3)
    with pytest.raises(TaskNotFound):
        await store.tasks.request_cancel("nope", 3)


async def test_list_filters(store: Store) -> None:
    await add(store, "a", "b", "c")
    await claim(store, [("b", "w1")], now=1)
    page = await store.tasks.list_tasks(
        TaskFilter(states=[TaskState.QUEUED]), limit=10, before=None
    )
    assert [t.id for t in page.tasks] == ["c", "a"]
    page = await store.tasks.list_tasks(TaskFilter(worker_id="w1"), limit=10, before=None)
    assert [t.id for t in page.tasks] == ["b"]


async def test_label_filter(store: Store) -> None:
    await add(store, "gpu", labels={"gpu": "yes", "zone": "a"})
    await add(store, "cpu", labels={"zone": "a"})
    flt = TaskFilter(labels={"zone": "a", "gpu": "yes"})
    assert [t.id for t in (await store.tasks.list_tasks(flt, limit=10, before=None)).tasks] == [
        "gpu"
    ]
    flt = TaskFilter(labels={"zone": "a"})
    assert [t.id for t in (await store.tasks.list_tasks(flt, 10, None)).tasks] == ["cpu", "gpu"]


async def test_idempotency_keys_name_the_existing_task(store: Store) -> None:
    spec = make_spec(cmd="true", idempotency_key="k1")
    first = await store.tasks.add_tasks([NewTask("a", spec)], now=1)
    again = await store.tasks.add_tasks(
        [
            NewTask("b", spec),
            NewTask("c", make_spec(cmd="x")),
        ],
        now=2,
    )
    assert [t.id for t in first] == ["a"]
    assert [t.id for t in again] == ["a", "c"]
    with pytest.raises(TaskNotFound):
        await store.tasks.get_task("b")


async def test_retry_backoff_and_attempt_history(store: Store) -> None:
    await add(store, "r", retry=RetryPolicy(max_attempts=2, initial_s=5))
    await claim(store, [("r", "w1")], now=1)
    await store.attempts.record_start(AttemptRef("r", 1), "w1", 2)
    failed = await store.attempts.record_finish(
        AttemptRef("r", 1), "w1", Report(Outcome.EXITED, exit_code=1), now=1000
    )
    assert failed.task is not None
    assert failed.task.state is TaskState.QUEUED
    assert failed.task.not_before == 6000
    assert await store.dispatch.queued(10, None, now=5999) == []
    assert not await store.dispatch.retry_due(5999)
    assert await store.dispatch.retry_due(6000)
    await claim(store, [("r", "w2")], now=6000)
    done = await store.attempts.record_finish(
        AttemptRef("r", 2), "w2", Report(Outcome.EXITED, 0), 6001
    )
    assert done.task is not None
    assert done.task.state is TaskState.SUCCEEDED
    attempts = await store.tasks.get_attempts("r")
    assert [(a.attempt, a.worker_id, a.state) for a in attempts] == [
        (1, "w1", TaskState.FAILED),
        (2, "w2", TaskState.SUCCEEDED),
    ]


async def test_queue_timeouts_expire(store: Store) -> None:
    await add(store, "e", queue_timeout_s=2)
    await add(store, "keep")
    assert await store.tasks.expire(now=2000) == []
    (expired,) = await store.tasks.expire(now=3001)
    assert (expired.id, expired.state) == ("e", TaskState.EXPIRED)
    assert "queue timeout of 2s" in (expired.error or "")


async def test_output_is_kept_per_stream_up_to_the_cap(store: Store) -> None:
    await add(store, "o")
    await claim(store, [("o", "w1")], now=1)
    ref = AttemptRef("o", 1)
    assert await store.attempts.append_output(ref, "w1", [(1, 0, b"abc"), (2, 0, b"err")], cap=4)
    assert await store.attempts.append_output(ref, "w1", [(1, 3, b"def")], cap=4)
    out = await store.tasks.get_output("o")
    assert (out.stdout.total, out.stderr.data) == (6, b"err")
    assert len(out.stdout.data) <= 4


async def test_claims_only_for_workers_leased_to_this_master(store: Store) -> None:
    await add(store, "a", "b")
    other = worker("w9")
    await store.workers.upsert_worker(other, lease_until=100)
    assert [t.id for t in await claim(store, [("a", "w9"), ("b", "nobody")], now=2)] == ["a"]
    # w9 moves to another master (its Hello there takes the lease): no more claims here for it
    store.origin, mine = "m2", store.origin
    await store.workers.upsert_worker(other, lease_until=200)
    store.origin = mine
    assert await claim(store, [("b", "w9")], now=3) == []
    # and this master may not mark it offline any more, only its new master may
    await store.workers.upsert_worker(worker("w9", WorkerState.OFFLINE), lease_until=50)
    assert await store.workers.worker_master("w9", now=150) == (WorkerState.ONLINE, "m2")
    assert await store.workers.worker_master("w9", now=201) == (WorkerState.ONLINE, None)  # lapsed
    with pytest.raises(WorkerNotFound):
        await store.workers.worker_master("nobody", now=1)


async def test_leases_lapse_and_are_renewed(store: Store) -> None:
    await add(store, "a", "b")
    await claim(store, [("a", "w1"), ("b", "w2")], now=2)
    assert await store.workers.lapsed(now=50) == set()
    assert await store.workers.lapsed(now=101) == {"w1", "w2"}
    await store.workers.renew_leases([("w1", 90, 190)])
    assert await store.workers.lapsed(now=101) == {"w2"}
    (w1,) = [w for w in await store.workers.list_workers() if w.id == "w1"]
    assert (w1.last_seen, w1.running, w1.assigned) == (90, 0, 1)  # claimed, not started
    assert await store.attempts.record_start(AttemptRef("a", 1), "w1", 95)
    (w1,) = [w for w in await store.workers.list_workers() if w.id == "w1"]
    assert (w1.running, w1.assigned) == (1, 0)


async def test_dependents_wait_then_run_or_are_skipped(store: Store) -> None:
    await add(store, "a", "b")
    (c,) = await store.tasks.add_tasks([NewTask("c", make_spec(cmd="c", after=["a", "b"]))], now=1)
    (d,) = await store.tasks.add_tasks([NewTask("d", make_spec(cmd="d", after=["c"]))], now=1)
    assert (c.state, d.state) == (TaskState.WAITING, TaskState.WAITING)
    assert [x.task_id for x in await store.dispatch.queued(10, None, now=2)] == ["a", "b"]
    await claim(store, [("a", "w1"), ("b", "w2")], now=2)
    await store.attempts.record_finish(AttemptRef("a", 1), "w1", Report(Outcome.EXITED, 0), now=3)
    assert (await store.tasks.get_task("c")).state is TaskState.WAITING  # b is still running
    await store.attempts.record_finish(AttemptRef("b", 1), "w2", Report(Outcome.EXITED, 0), now=4)
    assert (await store.tasks.get_task("c")).state is TaskState.QUEUED
    await claim(store, [("c", "w1")], now=5)
    await store.attempts.record_finish(AttemptRef("c", 1), "w1", Report(Outcome.EXITED, 9), now=6)
    skipped = await store.tasks.get_task("d")
    assert (skipped.state, skipped.error) == (TaskState.SKIPPED, "skipped: task c ended failed")


async def test_schedules_are_kept_and_each_slot_fires_once(store: Store) -> None:
    spec = make_spec(cmd="true", name="nightly")
    await store.schedules.add_schedule(
        Schedule("s1", "0 2 * * *", spec, created_at=1, next_at=1000)
    )
    assert await store.schedules.due_schedules(now=999) == []
    (due,) = await store.schedules.due_schedules(now=1000)
    assert (due.cron, due.spec.name, due.next_at) == ("0 2 * * *", "nightly", 1000)
    made = await store.schedules.fire_schedule(
        "s1", 1000, NewTask("t1", spec), next_at=5000, now=1001
    )
    assert made is not None
    assert made.id == "t1"
    again = await store.schedules.fire_schedule(
        "s1", 1000, NewTask("t2", spec), next_at=5000, now=1002
    )
    assert again is None  # that slot is done
    (kept,) = await store.schedules.list_schedules()
    assert (kept.next_at, kept.last_fired, kept.last_task) == (5000, 1000, "t1")
    await store.schedules.delete_schedule("s1")
    with pytest.raises(ScheduleNotFound):
        await store.schedules.get_schedule("s1")


async def run_to_end(store: Store, task_id: str, worker_id: str, code: int, now: int) -> None:
    """Claim, start, write output and finish a task the way a worker's reports do."""
    await claim(store, [(task_id, worker_id)], now=now)
    ref = AttemptRef(task_id, 1)
    await store.attempts.record_start(ref, worker_id, now)
    await store.attempts.append_output(ref, worker_id, [(1, 0, b"out")], cap=1024)
    await store.attempts.record_finish(ref, worker_id, Report(Outcome.EXITED, exit_code=code), now)


async def test_retention_deletes_exactly_the_ended_tasks_past_their_time(store: Store) -> None:
    await add(store, "old_ok", "old_bad", "new_ok", "running", "queued", "old_dep")
    await claim(store, [("running", "w3")], now=1_000)
    # `blocked` waits for old_dep (which will have succeeded) and `running` (which has not)
    after = ["old_dep", "running"]
    await store.tasks.add_tasks([NewTask("blocked", make_spec(cmd="true", after=after))], now=1)
    await run_to_end(store, "old_ok", "w1", 0, now=1_000)
    await run_to_end(store, "old_bad", "w1", 3, now=1_000)
    await run_to_end(store, "old_dep", "w2", 0, now=1_000)
    await run_to_end(store, "new_ok", "w2", 0, now=9_000)
    assert (await store.tasks.get_task("blocked")).state is TaskState.WAITING
    before = await store.tasks.count_by_state()
    ok = [TaskState.SUCCEEDED]
    assert (
        await store.retention.count_collectable(5_000, ok) == 1
    )  # old_ok; not old_dep, not new_ok
    assert await store.retention.collect(5_000, ok, dry_run=True) == 1
    assert await store.tasks.get_task("old_ok")  # a dry run deletes nothing
    assert (
        await store.retention.collect(5_000, [TaskState.SUCCEEDED, TaskState.FAILED], limit=1) == 1
    )
    assert (
        await store.retention.collect(5_000, [TaskState.SUCCEEDED, TaskState.FAILED]) == 1
    )  # batches
    for gone in ("old_ok", "old_bad"):
        with pytest.raises(TaskNotFound):
            await store.tasks.get_task(gone)
        for table in ("output", "attempts", "deps"):  # nothing of it is left behind
            row = await store.read(  # type: ignore[attr-defined]
                lambda tx, t=table, g=gone: tx.one(f"SELECT count(*) FROM {t} WHERE task_id = ?", g)
            )
            assert row[0] == 0, table
    # what is young, not ended, or asked for by a task that waits is kept
    for kept in ("new_ok", "running", "queued", "old_dep", "blocked"):
        assert (await store.tasks.get_task(kept)).id == kept
    assert await store.retention.collect(5_000, [TaskState.RUNNING, TaskState.QUEUED]) == 0
    assert await store.retention.collect(10**13, [TaskState.WAITING, TaskState.ASSIGNED]) == 0
    counts = await store.tasks.count_by_state()
    assert counts.get(TaskState.SUCCEEDED, 0) == before[TaskState.SUCCEEDED] - 1  # counts follow
    assert counts.get(TaskState.FAILED, 0) == before[TaskState.FAILED] - 1
    await store.tasks.request_cancel("blocked", now=2)  # now nothing waits for old_dep
    assert await store.retention.collect(5_000, ok) == 1


async def test_the_task_a_report_leaves_is_its_row_as_stored(store: Store) -> None:
    """A batch reads each attempt it names once and the settled task is made, not read again:
    whatever the way an attempt ends, that task is the row as a reader finds it."""
    retry = RetryPolicy(max_attempts=2, initial_s=5)
    await add(store, "ok", "slotless", "cancelled")
    await add(store, "flaky", retry=retry)
    await add(store, "gone", "hurt")
    await claim(store, [(t, "w1") for t in ("ok", "slotless", "cancelled", "flaky")], now=2)
    await claim(store, [("gone", "w2"), ("hurt", "w2")], now=2)
    await store.tasks.request_cancel("cancelled", now=3)
    usage = Usage(cpu_s=0.25, peak_memory_bytes=1 << 20, io_read_bytes=7, io_write_bytes=9)
    ok, flaky = AttemptRef("ok", 1), AttemptRef("flaky", 1)
    results = await store.attempts.record_reports(
        "w1",
        [
            Started(ok, 4),
            Output(ok, [(Stream.STDOUT, 0, b"hi\n")]),
            Finished(ok, Report(Outcome.EXITED, 0, started_at=4, finished_at=5, usage=usage)),
            Finished(ok, Report(Outcome.EXITED, 1, finished_at=6)),  # a second: stale
            Started(ok, 7),  # stale too: that attempt is over
            Finished(AttemptRef("slotless", 1), Report(Outcome.NO_SLOT, error="full")),
            Finished(AttemptRef("cancelled", 1), Report(Outcome.NO_SLOT)),
            Started(flaky, 4),
            Finished(flaky, Report(Outcome.EXITED, 3, started_at=4, finished_at=8)),
        ],
        cap=1 << 20,
        now=10,
    )
    assert [r.applied for r in results] == [True, True, True, False, False, True, True, True, True]
    settled = {r.task.id: r.task for r in results if r.task is not None}
    assert {t: s.state for t, s in settled.items()} == {
        "ok": TaskState.SUCCEEDED, "slotless": TaskState.QUEUED,
        "cancelled": TaskState.CANCELLED, "flaky": TaskState.QUEUED,
    }  # fmt: skip
    assert settled["ok"].usage == Usage(cpu_s=0.25, peak_memory_bytes=1 << 20)
    assert settled["flaky"].not_before == 10 + 5000
    for task_id, task in settled.items():
        assert task == await store.tasks.get_task(task_id), task_id
    assert (await store.tasks.get_output("ok")).stdout.data == b"hi\n"
    await store.attempts.record_start(AttemptRef("hurt", 1), "w2", 3)
    lost = await store.attempts.mark_lost("w2", [], now=11, reason="worker w2 is gone")
    assert {t.id: t.state for t in lost} == {"gone": TaskState.LOST, "hurt": TaskState.LOST}
    for task in lost:
        assert task == await store.tasks.get_task(task.id), task.id


async def test_a_claim_takes_its_pairs_in_order_and_starts_each_attempt_afresh(
    store: Store,
) -> None:
    """In placement's order, not the queue's; a retried task's earlier output is gone; each
    attempt is recorded as announced where its worker announces its starts (so losing that
    worker puts it back in the queue, never started). PostgreSQL does it in one statement."""
    await add(store, "r", retry=RetryPolicy(max_attempts=3, initial_s=1))
    await claim(store, [("r", "w1")], now=2)
    assert await store.attempts.append_output(
        AttemptRef("r", 1), "w1", [(Stream.STDOUT, 0, b"old")], 99
    )
    await store.attempts.record_finish(AttemptRef("r", 1), "w1", Report(Outcome.EXITED, 1), now=3)
    await add(store, "a", "b", "c")
    order = [("c", "w2"), ("r", "w1"), ("a", "w2")]

    def placed(
        heads: dict[str, list[Candidate]], active: Active, quotas: Sequence[Quota]
    ) -> Placed:
        by_id = {c.task_id: c for lane in heads.values() for c in lane}
        return [(by_id[t], w) for t, w in order if t in by_id]

    lanes = await store.dispatch.queued_lanes("", 100)
    done = await store.dispatch.plan_and_claim(lanes, 100, 5000, placed, announcing={"w2"})
    assert [(t.id, t.attempt, t.worker_id) for t in done.claimed] == [
        ("c", 1, "w2"), ("r", 2, "w1"), ("a", 1, "w2"),
    ]  # fmt: skip
    for task in done.claimed:
        assert task == await store.tasks.get_task(task.id)
    assert (await store.tasks.get_output("r")).stdout.data == b""
    back = await store.attempts.mark_lost("w2", [], now=5001, reason="w2 is gone")
    assert {t.id: t.state for t in back} == {"a": TaskState.QUEUED, "c": TaskState.QUEUED}
    lost = await store.attempts.mark_lost("w1", [], now=5002, reason="w1 is gone")
    assert [(t.id, t.state) for t in lost] == [("r", TaskState.QUEUED)]  # (a try left)
    assert (await store.tasks.get_task("b")).state is TaskState.QUEUED


async def test_owners_counts_assigned_and_running_apart(store: Store) -> None:
    """`top` and GET /v1/owners showed a task sent but not started as running."""
    await add(store, "a", "b", "c", submitted_by="alice")
    await claim(store, [("a", "w1"), ("b", "w1")], now=2)
    assert await store.attempts.record_start(AttemptRef("a", 1), "w1", 3)
    assert await store.dispatch.owners() == [
        ("alice", "default", 1, 1, 1)
    ]  # queued, assigned, running


async def test_a_listing_by_duration_is_the_top_of_all_not_of_the_newest(store: Store) -> None:
    """`ls --sort duration --limit 2` sorted the 2 newest; it is the 2 longest of all now,
    those never run last; and since/until bound the time of creation."""
    await add(store, "old_long", "mid_short", "new_short", "never")
    claimed = await claim(store, [("old_long", "w1"), ("mid_short", "w2"), ("new_short", "w3")], 2)
    took = {"old_long": 50, "mid_short": 5, "new_short": 1}
    for task in claimed:
        report = Report(Outcome.EXITED, exit_code=0, started_at=10, finished_at=10 + took[task.id])
        await store.attempts.record_finish(task.ref, str(task.worker_id), report, now=100)
    top = await store.tasks.list_tasks(TaskFilter(), 2, None, "duration")
    assert ([t.id for t in top.tasks], top.next_cursor) == (["old_long", "mid_short"], None)
    every = await store.tasks.list_tasks(TaskFilter(), 10, None, "duration")
    assert [t.id for t in every.tasks][-1] == "never"
    assert (
        await store.tasks.list_tasks(TaskFilter(since=2), 10, None)
    ).tasks == []  # all made at 1
    assert len((await store.tasks.list_tasks(TaskFilter(since=1, until=2), 10, None)).tasks) == 4


async def test_a_job_read_cancelled_and_run_again_as_one(store: Store) -> None:
    """store.jobs on each backend: a job's counts and first task, a filter's cancel in one
    step (active tasks flagged for their workers), its ended tasks queued again."""
    spec = make_spec(cmd="true")
    job = [NewTask(f"j{i}", dataclasses.replace(spec, job="J", job_index=i)) for i in range(4)]
    await store.tasks.add_tasks(job, now=1)
    await store.tasks.add_tasks(
        [NewTask("k0", dataclasses.replace(spec, job="K", job_index=0))], now=2
    )
    await claim(store, [("j2", "w1")], now=3)
    summary = await store.jobs.summary("J")
    assert (summary.first.id, summary.size, summary.counts) == (
        "j0",
        4,
        {TaskState.QUEUED: 3, TaskState.ASSIGNED: 1},
    )
    assert [j.id for j in await store.jobs.list_jobs(10)] == ["K", "J"]  # newest first
    page = await store.tasks.list_tasks(TaskFilter(job="J", job_index=2), 10, None)
    assert [t.id for t in page.tasks] == ["j2"]
    found = await store.jobs.cancel(TaskFilter(job="J"), now=4)
    assert sorted(t.id for t in found) == ["j0", "j1", "j2", "j3"]
    flagged = await store.tasks.get_task("j2")
    assert (flagged.state, flagged.cancel_requested) == (TaskState.ASSIGNED, True)
    after = await store.jobs.summary("J")
    assert after.counts == {TaskState.CANCELLED: 3, TaskState.ASSIGNED: 1}
    assert [t.spec.job_index for t in after.unsuccessful] == [0, 1, 3]
    assert (await store.tasks.get_task("k0")).state is TaskState.QUEUED  # another job's
    _, again = await store.jobs.rerun("J", [TaskState.CANCELLED], now=5)
    assert sorted(t.id for t in again) == ["j0", "j1", "j3"]
    back = await store.tasks.get_task("j1")
    assert (back.state, back.finished_at, back.error) == (TaskState.QUEUED, None, None)
    assert (await store.tasks.count_by_state())[TaskState.QUEUED] == 4  # the counts follow
    with pytest.raises(JobNotFound):
        await store.jobs.summary("nope")


async def test_a_short_id_is_made_whole_on_each_backend(store: Store) -> None:
    spec = make_spec(cmd="true")
    ids = ["01a2500000aa" + "0123456789ab", "01a2500000aa" + "fedcba987654"]
    await store.tasks.add_tasks(
        [NewTask(i, dataclasses.replace(spec, job="01a2500000bbcafe01234567")) for i in ids],
        now=1,
    )
    assert await store.tasks.resolve_id(ids[0][:14]) == ids[0]  # a unique prefix
    assert await store.tasks.resolve_id("456789ab") == ids[0]  # a unique tail
    assert await store.tasks.resolve_id(ids[1].upper()[-8:]) == ids[1]
    with pytest.raises(AmbiguousId, match="names more than one task"):
        await store.tasks.resolve_id(ids[0][:12])
    assert await store.tasks.resolve_id("abc") == "abc"  # too short: left for the lookup
    assert await store.tasks.resolve_id("999999") == "999999"  # none: likewise
    assert await store.jobs.resolve_id("cafe01234567") == "01a2500000bbcafe01234567"


async def test_allocation_queues_and_their_allocations(store: Store, tmp_path: Path) -> None:
    """Queues are kept with their config, one name once; allocations saved and updated;
    the lease to act on them is one master's until it runs out."""
    config = QueueConfig(
        time_limit_s=600, backlog=2, max_workers=4, slots=3, labels={"zone": "a"},
        resources=Resources(2, 1024, 0), worker_args=("--allow-shell",), args=("-p", "debug"),
    )  # fmt: skip
    queue = AllocQueue("cpu", config, created_at=5)
    await store.allocations.add_queue(queue)
    with pytest.raises(AllocQueueExists):
        await store.allocations.add_queue(queue)
    assert await store.allocations.get_queue("cpu") == queue
    paused = replace(queue, state=QueueState.PAUSED, reason="why", failures=3, next_at=9)
    await store.allocations.update_queue(paused)
    assert await store.allocations.list_queues() == [paused]
    one = Allocation("a1", "cpu", AllocState.QUEUED, 1, created_at=10, token_hash="h1")
    two = Allocation("a2", "cpu", AllocState.QUEUED, 1, created_at=11, token_hash="h2")
    await store.allocations.save_allocation(one)
    await store.allocations.save_allocation(two)
    running = replace(one, state=AllocState.RUNNING, backend_id="17", started_at=12)
    await store.allocations.save_allocation(running)
    ended = replace(two, state=AllocState.FAILED, ended_at=13, error="refused")
    await store.allocations.save_allocation(ended)
    assert await store.allocations.active_allocations() == [running]
    assert await store.allocations.allocations("cpu") == [ended, running]  # newest first
    assert await store.allocations.lead(now=100, until=200)
    assert await store.allocations.lead(now=150, until=250)  # renewed by its holder
    removed = await store.allocations.remove_queue("cpu")
    assert removed == paused
    assert await store.allocations.allocations("cpu") == []
    with pytest.raises(AllocQueueNotFound):
        await store.allocations.get_queue("cpu")


@pytest.mark.pg
async def test_one_master_at_a_time_acts_on_the_allocation_queues() -> None:
    async with pg.database() as url:
        first, second = PostgresStore(url, origin="m1"), PostgresStore(url, origin="m2")
        await first.open()
        await second.open()
        try:
            assert await first.allocations.lead(now=100, until=200)
            assert not await second.allocations.lead(now=150, until=250)  # m1's runs
            assert await first.allocations.lead(now=190, until=290)  # renewed
            assert not await second.allocations.lead(now=250, until=350)
            assert await second.allocations.lead(now=291, until=391)  # m1's ran out
            assert not await first.allocations.lead(now=300, until=400)
        finally:
            await first.close()
            await second.close()


async def test_inputs_are_kept_per_owner_while_a_task_uses_them_and_files_go_with_their_task(
    store: Store,
) -> None:
    """An upload is its owner's; a task holds its inputs (one copy for many tasks); an input
    no task uses goes once its grace has passed; a collected file is incomplete until its end,
    and deleting its task deletes its bytes."""
    files = store.files
    sha = "cd" * 32
    assert await files.begin_input("alice", sha, now=1) is False
    await files.put_chunks(input_blob(input_key("alice", sha)), 0, [b"abc", b"def"])
    await files.finish_input("alice", sha, 6)
    assert await files.begin_input("alice", sha, now=2) is True  # held whole: nothing to send
    assert await files.input_sizes("alice", [sha]) == {sha: 6}
    assert await files.input_sizes("bob", [sha]) == {}
    inputs = (InputFile("in", sha, 6),)
    mine = make_spec(cmd="true", submitted_by="alice", inputs=inputs)
    theirs = make_spec(cmd="true", submitted_by="bob", inputs=inputs)
    with pytest.raises(InputNotUploaded):
        await store.tasks.add_tasks([NewTask("b1", theirs)], now=3)
    await store.tasks.add_tasks([NewTask(f"a{i}", mine) for i in range(3)], now=3)
    assert await files.unused_inputs(now=10**12) == 0  # (used)
    ref = AttemptRef("a0", 1)
    await files.begin_file(ref, "out/x", 6, 0o600, now=4)
    await files.put_chunks(file_blob("a0", 1, "out/x"), 0, [b"012", b"345"])
    (begun,) = await files.files("a0")
    assert (begun.state, begun.size) == (FileState.INCOMPLETE, 6)
    await files.finish_file(ref, "out/x", 6, "ee" * 32, 0o600, now=5)
    await files.drop_file(ref, "big", 10**9, "over the budget", now=5)
    listed = {f.path: f for f in await files.files("a0")}
    assert (listed["out/x"].state, listed["out/x"].digest) == (FileState.COMPLETE, "ee" * 32)
    assert (listed["big"].state, listed["big"].reason) == (FileState.DROPPED, "over the budget")
    assert await files.chunk(file_blob("a0", 1, "out/x"), 1) == b"345"
    assert await files.kept() == (6, 6, 1)
    for task_id in ("a0", "a1", "a2"):
        await store.tasks.request_cancel(task_id, now=6)
    assert await store.retention.collect(10**12, [TaskState.CANCELLED]) == 3
    assert await files.files("a0") == []
    assert await files.chunk(file_blob("a0", 1, "out/x"), 0) == b""
    assert await files.unused_inputs(now=10) == 0  # within its grace
    assert await files.unused_inputs(now=10**12) == 1
    assert await files.input_sizes("alice", [sha]) == {}
    assert await files.chunk(input_blob(input_key("alice", sha)), 0) == b""
