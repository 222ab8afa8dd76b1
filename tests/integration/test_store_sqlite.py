"""The SQLite store's contract on a real file: commits, fencing, claims, lost attempts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gridrun.errors import InvalidTransition, TaskNotFound
from gridrun.model import AttemptRef, Outcome, Report, TaskState
from gridrun.spec import make_spec
from gridrun.store import NewTask, TaskFilter
from gridrun.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "db" / "gridrun.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def add(store: SqliteStore, *ids: str, priority: int = 0) -> None:
    spec = make_spec(cmd="true", priority=priority)
    await store.add_tasks([NewTask(i, spec) for i in ids], now=1)


async def test_tasks_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    first = SqliteStore(path)
    await first.open()
    await add(first, "a", "b")
    await first.close()
    second = SqliteStore(path)
    await second.open()
    try:
        assert [c.task_id for c in await second.queued(10, None, now=10**13)] == ["a", "b"]
    finally:
        await second.close()


async def test_queue_order_and_resume_after(store: SqliteStore) -> None:
    await add(store, "low1", "low2")
    await add(store, "high", priority=5)
    first = await store.queued(2, None, now=10**13)
    assert [c.task_id for c in first] == ["high", "low1"]
    rest = await store.queued(10, (first[-1].priority, first[-1].seq), now=10**13)
    assert [c.task_id for c in rest] == ["low2"]


async def test_claim_only_takes_queued_tasks_and_bumps_the_attempt(store: SqliteStore) -> None:
    await add(store, "a", "b")
    await store.request_cancel("b", now=2)
    claimed = await store.claim([("a", "w1"), ("b", "w1")], now=3)
    assert [(t.id, t.attempt, t.worker_id, t.state) for t in claimed] == [
        ("a", 1, "w1", TaskState.ASSIGNED)
    ]
    assert await store.claim([("a", "w2")], now=4) == []  # no double claim


async def test_reports_are_fenced_by_attempt_and_worker(store: SqliteStore) -> None:
    await add(store, "a")
    await store.claim([("a", "w1")], now=1)
    ref = AttemptRef("a", 1)
    assert not await store.record_start(ref, "w2", 5)
    assert not await store.record_start(AttemptRef("a", 2), "w1", 5)
    assert await store.record_start(ref, "w1", 5)
    assert not await store.append_output(ref, "w2", [(1, 0, b"x")], cap=100)
    assert await store.append_output(ref, "w1", [(1, 0, b"hi")], cap=100)
    stale = await store.record_finish(ref, "w2", Report(Outcome.EXITED, exit_code=0), now=6)
    assert not stale.applied
    done = await store.record_finish(ref, "w1", Report(Outcome.EXITED, exit_code=4), now=7)
    assert done.applied
    assert done.task is not None
    assert done.task.state is TaskState.FAILED
    assert done.task.exit_code == 4
    again = await store.record_finish(ref, "w1", Report(Outcome.EXITED, exit_code=0), now=8)
    assert not again.applied  # a duplicate Finished is dropped
    task = await store.get_task("a")
    assert task.state is TaskState.FAILED
    assert task.exit_code == 4
    assert (await store.get_output("a")).stdout.data == b"hi"


async def test_no_slot_puts_the_task_back_in_the_queue(store: SqliteStore) -> None:
    await add(store, "a")
    await store.claim([("a", "w1")], now=1)
    result = await store.record_finish(AttemptRef("a", 1), "w1", Report(Outcome.NO_SLOT), 2)
    assert result.task is not None
    assert result.task.state is TaskState.QUEUED
    assert [t.attempt for t in await store.claim([("a", "w2")], now=3)] == [2]


async def test_mark_lost_keeps_the_attempts_the_worker_still_holds(store: SqliteStore) -> None:
    await add(store, "a", "b", "c")
    await store.claim([("a", "w1"), ("b", "w1"), ("c", "w2")], now=1)
    lost = await store.mark_lost("w1", [AttemptRef("a", 1)], now=2, reason="gone")
    assert [t.id for t in lost] == ["b"]
    assert (await store.get_task("b")).state is TaskState.LOST
    assert (await store.get_task("a")).state is TaskState.ASSIGNED
    assert (await store.get_task("c")).state is TaskState.ASSIGNED
    assert await store.workers_with_active_tasks() == {"w1", "w2"}


async def test_cancel_rules(store: SqliteStore) -> None:
    await add(store, "q", "r")
    assert (await store.request_cancel("q", 1)).state is TaskState.CANCELLED
    await store.claim([("r", "w1")], now=1)
    flagged = await store.request_cancel("r", 2)
    assert flagged.state is TaskState.ASSIGNED
    assert flagged.cancel_requested
    with pytest.raises(InvalidTransition):
        await store.request_cancel("q", 3)
    with pytest.raises(TaskNotFound):
        await store.request_cancel("nope", 3)


async def test_list_filters(store: SqliteStore) -> None:
    await add(store, "a", "b", "c")
    await store.claim([("b", "w1")], now=1)
    page = await store.list_tasks(TaskFilter(states=[TaskState.QUEUED]), limit=10, before=None)
    assert [t.id for t in page.tasks] == ["c", "a"]
    page = await store.list_tasks(TaskFilter(worker_id="w1"), limit=10, before=None)
    assert [t.id for t in page.tasks] == ["b"]


async def test_group_commit_isolates_a_failing_write_from_its_batch(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "g.db"
    store = SqliteStore(path)
    await store.open()
    await add(store, "a", "b")
    await store.request_cancel("b", now=1)
    results = await asyncio.gather(
        *(store.add_tasks([NewTask(f"n{i}", make_spec(cmd="true"))], now=2) for i in range(50)),
        store.request_cancel("b", now=3),  # already cancelled: InvalidTransition
        store.claim([("a", "w1")], now=3),
        store.request_cancel("missing", now=3),  # TaskNotFound
        return_exceptions=True,
    )
    assert isinstance(results[50], InvalidTransition)
    assert isinstance(results[52], TaskNotFound)
    assert [t.id for t in results[51]] == ["a"]  # type: ignore[union-attr]
    await store.close()
    reopened = SqliteStore(path)
    await reopened.open()
    try:
        queued = await reopened.queued(100, None, now=10**13)
        assert sorted(c.task_id for c in queued) == sorted(f"n{i}" for i in range(50))
        assert (await reopened.get_task("a")).state is TaskState.ASSIGNED
        assert (await reopened.get_task("b")).state is TaskState.CANCELLED
    finally:
        await reopened.close()


async def test_a_cancelled_writer_neither_loses_its_write_nor_wedges_the_store(
    store: SqliteStore,
) -> None:
    import asyncio

    # Queue writes behind a big one, cancel some of their callers while they wait: their writes
    # still land, and the store keeps taking writes (a cancelled caller once wedged it for good).
    big = asyncio.create_task(
        store.add_tasks([NewTask(f"big{i}", make_spec(cmd="true")) for i in range(3000)], now=1)
    )
    waiting = [
        asyncio.create_task(store.add_tasks([NewTask(f"c{i}", make_spec(cmd="true"))], now=1))
        for i in range(20)
    ]
    await asyncio.sleep(0)
    for task in waiting[::2]:
        task.cancel()
    await asyncio.wait_for(asyncio.gather(big, *waiting, return_exceptions=True), 10)
    after = await asyncio.wait_for(
        store.add_tasks([NewTask("after", make_spec(cmd="true"))], now=2), 5
    )
    assert [t.id for t in after] == ["after"]
    ids = {c.task_id for c in await store.queued(5000, None, now=10**13)}
    assert {f"c{i}" for i in range(20)} <= ids
    assert "after" in ids


async def test_a_version_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    import sqlite3

    from gridrun.store import sqlite_sql

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    for statement in sqlite_sql.SCHEMA_V1.split(";"):
        if statement.strip():
            conn.execute(statement)
    v1_spec = (
        '{"argv":["true"],"cmd":"true","shell":false,"env":{},"cwd":null,"timeout_s":null,'
        '"priority":0,"labels":{},"name":null}'
    )
    conn.execute(
        "INSERT INTO tasks (id, name, spec, priority, selector, legacy_ok, state, created_at)"
        " VALUES ('old', NULL, ?, 0, '{}', 1, 'queued', 1)",
        (v1_spec,),
    )
    conn.execute(
        "INSERT INTO workers (id, hostname, labels, slots, state, version, legacy)"
        " VALUES ('w0', 'h', '{}', 2, 'offline', '0.0.1', 0)"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        task = await store.get_task("old")
        assert task.spec.retry.max_attempts == 1
        (worker,) = await store.list_workers()
        assert (worker.id, dict(worker.resources)) == ("w0", {})  # v3: resources, none known
        assert [c.task_id for c in await store.queued(10, None, now=2)] == ["old"]
        claimed = await store.claim([("old", "w1")], now=3)
        assert [a.attempt for a in await store.get_attempts("old")] == [claimed[0].attempt]
    finally:
        await store.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == sqlite_sql.SCHEMA_VERSION
    check.close()
