"""What only the PostgreSQL store does: several masters' stores on one database at once —
migrating together, racing for the same tasks, and hearing each other's notices."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gridrun.errors import Unavailable
from gridrun.model import AttemptRef, Outcome, Report, TaskState, WorkerInfo, WorkerState
from gridrun.spec import make_spec
from gridrun.store import NewTask, Notice, NoticeKind, postgres_sql
from gridrun.store.postgres import PostgresStore, commit, literal, numbered, redact
from tests import pg
from tests.helpers import claim, eventually_async

pytestmark = [pytest.mark.pg]


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with pg.database() as u:
        yield u


def online(worker_id: str) -> WorkerInfo:
    return WorkerInfo(worker_id, "h", {}, 8, WorkerState.ONLINE)


@pytest.fixture
async def two(url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Masters ma and mb on one database, each holding a worker (wa, wb)."""
    a, b = PostgresStore(url, origin="ma"), PostgresStore(url, origin="mb")
    await a.open()
    await b.open()
    try:
        await a.workers.upsert_worker(online("wa"), lease_until=10**13)
        await b.workers.upsert_worker(online("wb"), lease_until=10**13)
        yield a, b
    finally:
        await a.close()
        await b.close()


def test_placeholders_are_numbered_and_passwords_hidden() -> None:
    assert numbered("a = ? AND b IN (?, ?)") == "a = $1 AND b IN ($2, $3)"
    assert redact("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"


async def test_masters_starting_together_migrate_once(url: str) -> None:
    stores = [PostgresStore(url, origin=f"m{i}") for i in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT version FROM gridrun_schema")
            assert [tuple(r) for r in rows] == [(postgres_sql.SCHEMA_VERSION,)]
        finally:
            await conn.close()
        await stores[0].tasks.add_tasks([NewTask("a", make_spec(cmd="true"))], now=1)
        assert (await stores[3].tasks.get_task("a")).id == "a"
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_racing_masters_never_claim_a_task_twice(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    ids = [f"t{i}" for i in range(200)]
    await a.tasks.add_tasks([NewTask(i, make_spec(cmd="true")) for i in ids], now=1)
    # both try to claim every task, in many small concurrent batches, in opposite orders
    claims = [claim(a, [(i, "wa") for i in ids[k : k + 10]], now=2) for k in range(0, 200, 10)]
    claims += [
        claim(b, [(i, "wb") for i in reversed(ids[k : k + 10])], 2) for k in range(0, 200, 10)
    ]
    results = await asyncio.gather(*claims)
    claimed = [t.id for batch in results for t in batch]
    assert sorted(claimed) == sorted(ids)  # each exactly once
    by_a = {t.id for batch in results[:20] for t in batch}
    for i in ids:
        assert (await b.tasks.get_task(i)).worker_id == ("wa" if i in by_a else "wb")


async def test_notices_reach_the_other_masters_only_on_commit(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    heard: list[Notice] = []
    await b.listen(heard.append)
    await a.tasks.add_tasks([NewTask("x", make_spec(cmd="true"))], now=1)
    with pytest.raises(asyncpg.exceptions.UniqueViolationError):  # rolled back: no notice
        await a.tasks.add_tasks([NewTask("x", make_spec(cmd="true"))], now=2)
    await a.notify(Notice("ma", NoticeKind.DRAIN, "w1"))
    await eventually_async(lambda: len(heard) >= 2, 5)
    assert [(n.origin, n.kind, n.subject) for n in heard] == [
        ("ma", "queued", ""),
        ("ma", "drain", "w1"),
    ]


async def test_an_unreachable_server_is_unavailable_not_a_hang() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/none", timeout_s=2)
    with pytest.raises(Unavailable, match="unreachable"):
        await asyncio.wait_for(store.open(), 10)


async def test_prerequisites_finishing_at_once_on_two_masters_release_their_dependent(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    from gridrun.model import AttemptRef, Outcome, Report, TaskState

    a, b = two
    for n in range(15):
        x, y, z = f"x{n}", f"y{n}", f"z{n}"
        await a.tasks.add_tasks(
            [NewTask(x, make_spec(cmd="x")), NewTask(y, make_spec(cmd="y")),
             NewTask(z, make_spec(cmd="z", after=[x, y]))],
            now=1,
        )  # fmt: skip
        await claim(a, [(x, "wa")], now=2)
        await claim(b, [(y, "wb")], now=2)
        ok = Report(Outcome.EXITED, exit_code=0)
        await asyncio.gather(
            a.attempts.record_finish(AttemptRef(x, 1), "wa", ok, now=3),
            b.attempts.record_finish(AttemptRef(y, 1), "wb", ok, now=3),
        )
        assert (await a.tasks.get_task(z)).state is TaskState.QUEUED, n


async def test_masters_firing_one_schedule_slot_at_once_make_one_task(url: str) -> None:
    from gridrun.model import Schedule

    stores = [PostgresStore(url, origin=f"m{i}") for i in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        spec = make_spec(cmd="true")
        await stores[0].schedules.add_schedule(
            Schedule("s1", "* * * * *", spec, created_at=0, next_at=60_000)
        )
        for slot in (60_000, 120_000, 180_000):
            fired = await asyncio.gather(
                *(
                    s.schedules.fire_schedule(
                        "s1", slot,
                        NewTask(f"t{slot}-{i}", make_spec(cmd="true", idempotency_key=f"k{slot}")),
                        slot + 60_000, slot + 1,
                    )
                    for i, s in enumerate(stores)
                )
            )  # fmt: skip
            assert sum(task is not None for task in fired) == 1, slot
        (schedule,) = await stores[1].schedules.list_schedules()
        assert (schedule.next_at, schedule.last_fired) == (240_000, 180_000)
        assert sum((await stores[2].tasks.count_by_state()).values()) == 3
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_counts_stay_exact_while_two_masters_change_tasks_and_fold_at_once(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    ids = [f"t{i}" for i in range(100)]
    await a.tasks.add_tasks([NewTask(i, make_spec(cmd="true")) for i in ids[:50]], now=1)
    await b.tasks.add_tasks([NewTask(i, make_spec(cmd="true")) for i in ids[50:]], now=1)
    ok = Report(Outcome.EXITED, exit_code=0)

    async def work(store: PostgresStore, worker: str, mine: list[str]) -> None:
        for k in range(0, len(mine), 5):
            await claim(store, [(i, worker) for i in mine[k : k + 5]], now=2)
            await asyncio.gather(
                *(
                    store.attempts.record_finish(AttemptRef(i, 1), worker, ok, now=3)
                    for i in mine[k : k + 3]
                ),
                store.fold_counts(),
            )

    async def folding() -> None:
        for _ in range(20):
            await asyncio.gather(a.fold_counts(), b.fold_counts())

    await asyncio.gather(work(a, "wa", ids[::2]), work(b, "wb", ids[1::2]), folding())
    expected = {TaskState.SUCCEEDED: 60, TaskState.ASSIGNED: 40}
    assert await a.tasks.count_by_state() == expected
    await b.fold_counts()
    assert await a.tasks.count_by_state() == expected
    assert await b.tasks.count_by_state() == expected


async def test_a_database_from_before_kept_counts_is_counted_as_it_migrates(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(postgres_sql.CREATE_VERSION_TABLE)
            for migration in postgres_sql.MIGRATIONS[:6]:
                await conn.execute(migration)
            await conn.execute(postgres_sql.SET_VERSION.format(version=6))
            await conn.execute(
                "INSERT INTO tasks (id, spec, priority, selector, legacy_ok, state, created_at)"
                " SELECT 'v6-' || i, '{}', 0, '{}', 1, CASE WHEN i <= 3 THEN 'queued'"
                " ELSE 'succeeded' END, 1 FROM generate_series(1, 10) AS i"
            )
    finally:
        await conn.close()
    store = PostgresStore(url, origin="m1")
    await store.open()
    try:
        assert await store.tasks.count_by_state() == {TaskState.QUEUED: 3, TaskState.SUCCEEDED: 7}
        await store.tasks.add_tasks([NewTask("new", make_spec(cmd="true"))], now=2)
        assert await store.tasks.count_by_state() == {TaskState.QUEUED: 4, TaskState.SUCCEEDED: 7}
    finally:
        await store.close()


NASTY = ["plain", "it's", "back\\slash", "\\'; SELECT 1; --", "$$", "ünï\ncode\t", "E'x'", "\\\\''"]


@pytest.mark.parametrize("conforming", ["on", "off"])
async def test_notices_ride_their_commit_byte_exact(url: str, conforming: str) -> None:
    """A step's notices go with its COMMIT in one round trip, as literals: whatever a payload
    holds (quotes, backslashes, SQL), it is read back as it was, and nothing else runs."""
    rng = random.Random(7)
    texts = NASTY + ["".join(chr(rng.randrange(1, 0x3000)) for _ in range(40)) for _ in range(20)]
    texts = [t for t in texts if not any(0xD800 <= ord(c) < 0xE000 for c in t)]
    sender, listener = await asyncpg.connect(url), await asyncpg.connect(url)
    heard: list[str] = []
    try:
        await sender.execute(f"SET standard_conforming_strings = {conforming}")
        for text in texts:
            assert await sender.fetchval(f"SELECT {literal(text)}") == text
        await listener.add_listener("gridrun", lambda *args: heard.append(args[3]))
        await sender.execute("BEGIN")
        await sender.execute(commit(texts))
        assert not sender.is_in_transaction()
        await eventually_async(lambda: len(heard) == len(texts), 10)
        assert heard == texts
        await sender.execute("BEGIN")
        with pytest.raises(asyncpg.PostgresError):  # (over pg_notify's 8000 bytes)
            await sender.execute(commit(["x" * 9000, "never sent"]))
        await sender.execute("ROLLBACK")
        await asyncio.sleep(0.2)
        assert heard == texts
    finally:
        await sender.close()
        await listener.close()
