"""What only the SQLite store does: one file reopened, group commit, in-place migrations.
(The contract both stores keep is tests/integration/test_store.py.)"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gridrun.errors import InvalidTransition, TaskNotFound
from gridrun.model import TaskState, WorkerInfo, WorkerState
from gridrun.spec import make_spec
from gridrun.store import NewTask
from gridrun.store import queries as sql
from gridrun.store.relational_tx import TASKS_BY_ID, marks
from gridrun.store.sqlite import SqliteStore
from tests.helpers import claim


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "db" / "gridrun.db", origin="m1")
    await s.open()
    try:
        await s.workers.upsert_worker(
            WorkerInfo("w1", "h", {}, 2, WorkerState.ONLINE), lease_until=100
        )
        yield s
    finally:
        await s.close()


async def add(store: SqliteStore, *ids: str, priority: int = 0) -> None:
    spec = make_spec(cmd="true", priority=priority)
    await store.tasks.add_tasks([NewTask(i, spec) for i in ids], now=1)


async def test_tasks_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    first = SqliteStore(path)
    await first.open()
    await add(first, "a", "b")
    await first.close()
    second = SqliteStore(path)
    await second.open()
    try:
        assert [c.task_id for c in await second.dispatch.queued(10, None, now=10**13)] == ["a", "b"]
    finally:
        await second.close()


async def test_group_commit_isolates_a_failing_write_from_its_batch(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "g.db"
    store = SqliteStore(path, origin="m1")
    await store.open()
    await store.workers.upsert_worker(
        WorkerInfo("w1", "h", {}, 2, WorkerState.ONLINE), lease_until=100
    )
    await add(store, "a", "b")
    await store.tasks.request_cancel("b", now=1)
    results = await asyncio.gather(
        *(
            store.tasks.add_tasks([NewTask(f"n{i}", make_spec(cmd="true"))], now=2)
            for i in range(50)
        ),
        store.tasks.request_cancel("b", now=3),  # already cancelled: InvalidTransition
        claim(store, [("a", "w1")], now=3),
        store.tasks.request_cancel("missing", now=3),  # TaskNotFound
        return_exceptions=True,
    )
    assert isinstance(results[50], InvalidTransition)
    assert isinstance(results[52], TaskNotFound)
    assert [t.id for t in results[51]] == ["a"]  # type: ignore[union-attr]
    await store.close()
    reopened = SqliteStore(path)
    await reopened.open()
    try:
        queued = await reopened.dispatch.queued(100, None, now=10**13)
        assert sorted(c.task_id for c in queued) == sorted(f"n{i}" for i in range(50))
        assert (await reopened.tasks.get_task("a")).state is TaskState.ASSIGNED
        assert (await reopened.tasks.get_task("b")).state is TaskState.CANCELLED
    finally:
        await reopened.close()


async def test_a_cancelled_writer_neither_loses_its_write_nor_wedges_the_store(
    store: SqliteStore,
) -> None:
    import asyncio

    # Queue writes behind a big one, cancel some of their callers while they wait: their writes
    # still land, and the store keeps taking writes (a cancelled caller once wedged it for good).
    big = asyncio.create_task(
        store.tasks.add_tasks(
            [NewTask(f"big{i}", make_spec(cmd="true")) for i in range(3000)], now=1
        )
    )
    waiting = [
        asyncio.create_task(store.tasks.add_tasks([NewTask(f"c{i}", make_spec(cmd="true"))], now=1))
        for i in range(20)
    ]
    await asyncio.sleep(0)
    for task in waiting[::2]:
        task.cancel()
    await asyncio.wait_for(asyncio.gather(big, *waiting, return_exceptions=True), 10)
    after = await asyncio.wait_for(
        store.tasks.add_tasks([NewTask("after", make_spec(cmd="true"))], now=2), 5
    )
    assert [t.id for t in after] == ["after"]
    ids = {c.task_id for c in await store.dispatch.queued(5000, None, now=10**13)}
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
        " VALUES ('old', NULL, ?, 0, '{\"zone\":\"a\"}', 1, 'queued', 1)",
        (v1_spec,),
    )
    conn.execute(
        "INSERT INTO workers (id, hostname, labels, slots, state, version, legacy)"
        " VALUES ('w0', 'h', '{}', 2, 'offline', '0.0.1', 0)"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = SqliteStore(path, origin="m1")
    await store.open()
    try:
        await store.workers.upsert_worker(WorkerInfo("w1", "h", {}, 2, WorkerState.ONLINE), 100)
        task = await store.tasks.get_task("old")
        assert task.spec.retry.max_attempts == 1
        assert await store.tasks.count_by_state() == {TaskState.QUEUED: 1}  # v10: counted as it was
        worker, _ = await store.workers.list_workers()
        assert (worker.id, dict(worker.resources)) == ("w0", {})  # v3: resources, none known
        (old,) = await store.dispatch.queued(10, None, now=2)
        assert (old.task_id, dict(old.labels)) == ("old", {"zone": "a"})  # v12: column renamed
        claimed = await claim(store, [("old", "w1")], now=3)
        assert await store.tasks.count_by_state() == {TaskState.ASSIGNED: 1}
        assert [a.attempt for a in await store.tasks.get_attempts("old")] == [claimed[0].attempt]
    finally:
        await store.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == sqlite_sql.SCHEMA_VERSION
    check.close()


async def test_reads_of_the_queue_use_its_index_not_a_scan(tmp_path: Path) -> None:
    """Dispatch, claims, finishes and liveness rounds read a few rows each: with a million
    queued tasks a read of the whole queue (which SQLite's planner picks for several of them
    unless told which index to use) costs seconds on every pass."""
    path = tmp_path / "g.db"
    store = SqliteStore(path)
    await store.open()
    await add(store, *(f"q{i:04}" for i in range(400)))
    await add(store, *(f"p{i:04}" for i in range(5)), priority=5)
    await store.close()
    hint = SqliteStore.dialect.use_index
    reads = {
        "head": (sql.SELECT_QUEUED.format(index=hint("tasks_queue"), after=""), (10, 16)),
        "next page": (
            sql.SELECT_QUEUED.format(index=hint("tasks_queue"), after=sql.QUEUED_AFTER),
            (10, 0, 0, 5, 16),
        ),
        "retry due": (sql.SELECT_DUE.format(index=hint("tasks_retry")), (10,)),
        "expired": (sql.SELECT_EXPIRED.format(index=hint("tasks_expiry")), (10, 16)),
        "claimable": (
            sql.SELECT_CLAIMABLE.format(index=hint(TASKS_BY_ID), marks=marks(2)),
            ("q0350", "q0351"),
        ),
        "dependents": (sql.SELECT_WAITING_DEPENDENTS.format(index=hint(TASKS_BY_ID)), ("q0001",)),
        "active": (sql.SELECT_ACTIVE.format(index=hint("tasks_active")), ("w1",)),
        "workers": (sql.SELECT_WORKERS.format(index=hint("tasks_active")), ()),
    }
    wanted = ("tasks_queue", "tasks_retry", "tasks_expiry", TASKS_BY_ID, "tasks_active")
    with sqlite3.connect(path) as conn:
        for stats in ("none yet", "most tasks ended, analyzed"):
            if stats != "none yet":
                conn.execute(
                    "UPDATE tasks SET state = 'succeeded' WHERE id LIKE 'q0%' AND id < 'q0300'"
                )
                conn.execute("ANALYZE")
            for name, (query, args) in reads.items():
                plan = " ".join(
                    str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {query}", args)
                )
                if name != "dependents":  # (which sorts only one task's dependents)
                    assert "TEMP B-TREE" not in plan, (stats, name, plan)
                assert "tasks_by_state" not in plan, (stats, name, plan)
                assert any(f"INDEX {index} " in f"{plan} " for index in wanted), (stats, name, plan)
    reopened = SqliteStore(path)
    await reopened.open()
    try:
        head = await reopened.dispatch.queued(8, None, now=10)
        expected = [*(f"p{i:04}" for i in range(5)), "q0300", "q0301", "q0302"]
        assert [c.task_id for c in head] == expected
        page = await reopened.dispatch.queued(3, (head[-1].priority, head[-1].seq), now=10)
        assert [c.task_id for c in page] == ["q0303", "q0304", "q0305"]
    finally:
        await reopened.close()
