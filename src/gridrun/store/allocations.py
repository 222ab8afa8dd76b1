"""The store's allocation verbs (`store.allocations`, one object over the backend): the
allocation queues, each allocation a queue made, and the lease that lets one master at a time
act on them (on PostgreSQL several masters share the tables; the one holding the lease
submits and cancels, the others only read)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from gridrun.allocating import Allocation, AllocQueue, AllocState, QueueConfig, QueueState
from gridrun.errors import AllocQueueExists, AllocQueueNotFound
from gridrun.store import queries as sql
from gridrun.store.relational_tx import Db, Tx
from gridrun.store.rows import resources_from_json, resources_to_json


def config_to_json(config: QueueConfig) -> str:
    return orjson.dumps(
        {
            "backend": config.backend,
            "time_limit_s": config.time_limit_s,
            "backlog": config.backlog,
            "max_workers": config.max_workers,
            "workers_per_alloc": config.workers_per_alloc,
            "idle_timeout_s": config.idle_timeout_s,
            "slots": config.slots,
            "labels": dict(config.labels),
            "resources": resources_to_json(config.resources),
            "worker_args": list(config.worker_args),
            "worker_command": list(config.worker_command),
            "master": config.master,
            "args": list(config.args),
            "stop": list(config.stop),
        }
    ).decode()


def config_from_json(text: str) -> QueueConfig:
    raw = orjson.loads(text)
    return QueueConfig(
        backend=raw["backend"],
        time_limit_s=raw["time_limit_s"],
        backlog=raw["backlog"],
        max_workers=raw["max_workers"],
        workers_per_alloc=raw["workers_per_alloc"],
        idle_timeout_s=raw["idle_timeout_s"],
        slots=raw["slots"],
        labels=raw["labels"],
        resources=resources_from_json(raw["resources"]),
        worker_args=tuple(raw["worker_args"]),
        worker_command=tuple(raw["worker_command"]),
        master=raw["master"],
        args=tuple(raw["args"]),
        stop=tuple(raw.get("stop", ())),
    )


def _queue(row: Sequence[Any]) -> AllocQueue:
    return AllocQueue(
        name=row[0],
        config=config_from_json(row[1]),
        state=QueueState(row[2]),
        reason=row[3],
        failures=int(row[4]),
        created_at=int(row[5]),
        next_at=int(row[6]),
    )


def _allocation(row: Sequence[Any]) -> Allocation:
    return Allocation(
        id=row[0],
        queue=row[1],
        state=AllocState(row[2]),
        workers=int(row[3]),
        created_at=int(row[4]),
        backend_id=row[5],
        token_hash=row[6],
        started_at=row[7],
        connected_at=row[8],
        ended_at=row[9],
        error=row[10],
    )


def _row(a: Allocation) -> tuple[Any, ...]:
    return (
        a.id, a.queue, a.state.value, a.workers, a.created_at, a.backend_id, a.token_hash,
        a.started_at, a.connected_at, a.ended_at, a.error,
    )  # fmt: skip


class AllocationVerbs:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add_queue(self, queue: AllocQueue) -> AllocQueue:
        async def add(tx: Tx) -> None:
            if await tx.one(sql.SELECT_QUEUE, queue.name) is not None:
                raise AllocQueueExists(f"an allocation queue named {queue.name!r} exists")
            await tx.run(
                sql.INSERT_QUEUE, queue.name, config_to_json(queue.config), queue.state.value,
                queue.reason, queue.failures, queue.created_at, queue.next_at,
            )  # fmt: skip

        await self._db.write(add)
        return queue

    async def list_queues(self) -> list[AllocQueue]:
        async def read(tx: Tx) -> list[AllocQueue]:
            return [_queue(r) for r in await tx.all(sql.SELECT_QUEUES)]

        return await self._db.read(read)

    async def get_queue(self, name: str) -> AllocQueue:
        async def read(tx: Tx) -> AllocQueue:
            row = await tx.one(sql.SELECT_QUEUE, name)
            if row is None:
                raise AllocQueueNotFound(f"no allocation queue named {name!r}")
            return _queue(row)

        return await self._db.read(read)

    async def update_queue(self, queue: AllocQueue) -> AllocQueue:
        """Write a queue's state, reason, failures and backoff (its config is kept)."""

        async def update(tx: Tx) -> None:
            if await tx.one(sql.SELECT_QUEUE + self._db.dialect.lock, queue.name) is None:
                raise AllocQueueNotFound(f"no allocation queue named {queue.name!r}")
            await tx.run(
                sql.UPDATE_QUEUE, queue.state.value, queue.reason, queue.failures,
                queue.next_at, queue.name,
            )  # fmt: skip

        await self._db.write(update)
        return queue

    async def remove_queue(self, name: str) -> AllocQueue:
        """Delete a queue and the record of its allocations (cancel them first)."""

        async def remove(tx: Tx) -> AllocQueue:
            row = await tx.one(sql.SELECT_QUEUE + self._db.dialect.lock, name)
            if row is None:
                raise AllocQueueNotFound(f"no allocation queue named {name!r}")
            await tx.run(sql.DELETE_ALLOCATIONS_OF, name)
            await tx.run(sql.DELETE_QUEUE, name)
            return _queue(row)

        return await self._db.write(remove)

    async def save_allocation(self, allocation: Allocation) -> Allocation:
        """Insert an allocation, or write what changed of it (state, backend id, times, error)."""

        async def save(tx: Tx) -> None:
            await tx.run(sql.SAVE_ALLOCATION, *_row(allocation))

        await self._db.write(save)
        return allocation

    async def allocations(self, queue: str, limit: int = 100) -> list[Allocation]:
        """A queue's allocations, newest first."""

        async def read(tx: Tx) -> list[Allocation]:
            return [_allocation(r) for r in await tx.all(sql.SELECT_ALLOCATIONS_OF, queue, limit)]

        return await self._db.read(read)

    async def active_allocations(self) -> list[Allocation]:
        """Every queued or running allocation, of every queue, oldest first."""

        async def read(tx: Tx) -> list[Allocation]:
            return [_allocation(r) for r in await tx.all(sql.SELECT_ACTIVE_ALLOCATIONS)]

        return await self._db.read(read)

    async def get_allocation(self, allocation_id: str) -> Allocation | None:
        async def read(tx: Tx) -> Allocation | None:
            row = await tx.one(sql.SELECT_ALLOCATION, allocation_id)
            return None if row is None else _allocation(row)

        return await self._db.read(read)

    async def lead(self, now: int, until: int) -> bool:
        """Take or renew the lease to act on the queues, for this master (`origin`) until
        `until` (ms); True if it holds it now (no other master's lease is still running)."""
        origin = self._db.origin

        async def take(tx: Tx) -> bool:
            await tx.run(sql.TAKE_ALLOC_LEAD, origin, until, now)
            row = await tx.one(sql.SELECT_ALLOC_LEAD)
            return row is not None and row[0] == origin

        return await self._db.write(take)
