"""The store's dispatch verbs (`store.dispatch`, one object over the backend): reading the queue in
priority order and claiming what placement picked, in one transaction; marking why a task waits."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import orjson

from gridrun.dispatching import Active, Candidate, Lane, Planner, Quota
from gridrun.model import Task, TaskState, transition
from gridrun.store import LaneRead, NoticeKind, Pass
from gridrun.store import queries as sql
from gridrun.store.relational_tx import TASKS_BY_ID, Db, Tx, marks
from gridrun.store.rows import placement_from_json, task_from_row
from gridrun.store.task_steps import TaskSteps


class DispatchVerbs:
    def __init__(self, db: Db, steps: TaskSteps) -> None:
        self._db = db
        self._steps = steps

    async def queued(self, limit: int, after: tuple[int, int] | None, now: int) -> list[Candidate]:
        return await self._db.read(lambda tx: self._queued(tx, limit, after, now))

    async def queued_lanes(self, after: str, limit: int) -> list[Lane]:
        return await self._db.read(lambda tx: self._lanes(tx, after, limit))

    async def _lanes(self, tx: Tx, after: str, limit: int) -> list[Lane]:
        query = sql.SELECT_LANES.format(index=self._db.dialect.use_index("tasks_lanes"))
        return [lane_from_key(r[0]) for r in await tx.all(query, after, limit)]

    async def plan_and_claim(
        self,
        lanes: Sequence[Lane] | LaneRead,
        per_lane: int,
        now: int,
        plan: Planner,
        announcing: Collection[str] = (),
    ) -> Pass:
        async def step(tx: Tx) -> Pass:
            if isinstance(lanes, LaneRead):
                listed = await self._lanes(tx, lanes.after, lanes.limit)
                taken = [lane for lane in listed if lanes.takes(lane)]
            else:
                listed = taken = list(lanes)
            if not taken:
                return Pass(listed, {}, [], [])
            if any(lane.probe.concurrency is not None for lane in taken):
                await self._db.dialect.serialize_claims(tx)  # (the counts below are then exact)
            heads = {lane.key: await self._head(tx, lane, now, per_lane) for lane in taken}
            placed = plan(heads, await _active(tx, heads.values()), await _quotas(tx))
            if not placed:
                return Pass(listed, heads, placed, [])
            pairs = [(c.task_id, w) for c, w in placed]
            claimed = await self._claim(tx, pairs, now, announcing)
            return Pass(listed, heads, placed, claimed)

        return await self._db.write(step)

    async def lane_heads(self, lanes: Sequence[Lane], now: int, per_lane: int) -> list[Candidate]:
        async def read(tx: Tx) -> list[Candidate]:
            return [c for lane in lanes for c in await self._head(tx, lane, now, per_lane)]

        return await self._db.read(read)

    async def _head(self, tx: Tx, lane: Lane, now: int, limit: int) -> list[Candidate]:
        """The first `limit` claimable tasks of a lane (highest priority, then oldest)."""
        query = sql.SELECT_LANE_HEAD.format(index=self._db.dialect.use_index("tasks_lanes"))
        return [_candidate(r) for r in await tx.all(query, lane.key, now, limit)]

    async def quotas(self) -> list[Quota]:
        return await self._db.read(_quotas)

    async def set_quota(self, quota: Quota) -> None:
        async def step(tx: Tx) -> None:
            await tx.run(sql.DELETE_QUOTA, quota.scope, quota.name)
            if quota.max_queued is not None or quota.max_running is not None:
                await tx.run(
                    sql.INSERT_QUOTA, quota.scope, quota.name, quota.max_queued, quota.max_running
                )
            await self._steps.notice(tx, NoticeKind.QUEUED)  # a raised limit may let tasks run

        await self._db.write(step)

    async def concurrency_keys(self, limit: int) -> list[tuple[str, str, int]]:
        async def read(tx: Tx) -> list[tuple[str, str, int]]:
            rows = await tx.all(sql.SELECT_CONCURRENCY_KEYS, limit)
            return [(scope, key, int(n)) for scope, key, n in rows]

        return await self._db.read(read)

    async def set_grid_key(self, key: str, limit: int | None) -> None:
        async def step(tx: Tx) -> None:
            await tx.run(sql.DELETE_CONCURRENCY_KEY, "", key)
            if limit is not None:
                await tx.run(sql.INSERT_CONCURRENCY_KEY, "", key, limit)
            await self._steps.notice(tx, NoticeKind.QUEUED)  # a raised limit may let tasks run

        await self._db.write(step)

    async def owners(self) -> list[tuple[str, str, int, int, int]]:
        async def read(tx: Tx) -> list[tuple[str, str, int, int, int]]:
            query = sql.QUEUED_BY_OWNER.format(index=self._db.dialect.use_index("tasks_owners"))
            counts: dict[tuple[str, str], list[int]] = {}
            for owner, queue, n in await tx.all(query):
                counts.setdefault((owner, queue), [0, 0, 0])[0] = n
            for owner, queue, state, n in await tx.all(sql.RUNNING_BY_OWNER):
                column = 1 if state == TaskState.ASSIGNED else 2
                counts.setdefault((owner, queue), [0, 0, 0])[column] = n
            return [(o, q, *c) for (o, q), c in sorted(counts.items())]  # type: ignore[misc]

        return await self._db.read(read)

    async def queued_count(self, scope: str, name: str, limit: int) -> int:
        query = sql.COUNT_QUEUED_OWNER if scope == "owner" else sql.COUNT_QUEUED_QUEUE

        async def read(tx: Tx) -> int:
            row = await tx.one(query, name, limit)
            return int(row[0]) if row is not None else 0

        return await self._db.read(read)

    async def _queued(
        self, tx: Tx, limit: int, after: tuple[int, int] | None, now: int
    ) -> list[Candidate]:
        if after is None:
            query = sql.SELECT_QUEUED.format(
                index=self._db.dialect.use_index("tasks_queue"), after=""
            )
            args: tuple[int, ...] = (now, limit)
        else:
            priority, seq = after
            query = sql.SELECT_QUEUED.format(
                index=self._db.dialect.use_index("tasks_queue"), after=sql.QUEUED_AFTER
            )
            args = (now, priority, priority, seq, limit)
        return [_candidate(r) for r in await tx.all(query, *args)]

    async def mark_unschedulable(self, reasons: Sequence[tuple[str, str | None]]) -> None:
        if not reasons:
            return

        async def mark(tx: Tx) -> None:
            await tx.many(sql.MARK_UNSCHEDULABLE, [(why, task_id) for task_id, why in reasons])
            for task_id, _ in reasons:
                await self._steps.notice(tx, NoticeKind.TASK, task_id)

        await self._db.write(mark)

    async def retry_due(self, now: int) -> bool:
        """True if a task waiting out a retry backoff may be claimed now."""
        return await self._db.read(
            lambda tx: _exists(
                tx, sql.SELECT_DUE.format(index=self._db.dialect.use_index("tasks_retry")), now
            )
        )

    async def _claim(
        self,
        tx: Tx,
        assignments: Sequence[tuple[str, str]],
        now: int,
        announcing: Collection[str] = (),
    ) -> list[Task]:
        """Claim these (task id, worker id) pairs where the task is still queued and the
        worker this master's: the tasks as the claim left them, in the pairs' order."""
        assigned = transition(TaskState.QUEUED, TaskState.ASSIGNED)
        if self._db.dialect.claim_batch:  # one round trip
            claimed = await self._claim_at_once(tx, assignments, now, announcing, assigned)
        else:
            claimed = await self._claim_by_steps(tx, assignments, now, announcing, assigned)
        for task in claimed:
            await self._steps.notice(tx, NoticeKind.TASK, task.id)
        return claimed

    async def _claim_at_once(
        self,
        tx: Tx,
        assignments: Sequence[tuple[str, str]],
        now: int,
        announcing: Collection[str],
        assigned: TaskState,
    ) -> list[Task]:
        rows = await tx.all(
            self._db.dialect.claim_batch, [t for t, _ in assignments], [w for _, w in assignments],
            self._db.origin, str(assigned), now, sorted(announcing),
        )  # fmt: skip
        return [task_from_row(r) for r in rows]

    async def _claim_by_steps(
        self,
        tx: Tx,
        assignments: Sequence[tuple[str, str]],
        now: int,
        announcing: Collection[str],
        assigned: TaskState,
    ) -> list[Task]:
        worker_ids = sorted({w for _, w in assignments})
        task_ids = [t for t, _ in assignments]
        query = sql.SELECT_WORKER_MASTERS.format(marks=marks(len(worker_ids)))
        owned = {
            w
            for w, master in await tx.all(query + self._db.dialect.share_lock, *worker_ids)
            if master == self._db.origin
        }
        by_id = self._db.dialect.use_index(TASKS_BY_ID)
        query = sql.SELECT_CLAIMABLE.format(index=by_id, marks=marks(len(task_ids)))
        rows = await tx.all(query + self._db.dialect.skip_locked, *task_ids)
        queued = {t.id: t for t in map(task_from_row, rows)}
        claims = [
            (queued[task_id], worker_id)
            for task_id, worker_id in assignments
            if task_id in queued and worker_id in owned
        ]
        state = str(assigned)
        await tx.many(sql.CLAIM, [(state, w, now, t.id) for t, w in claims])
        # the output of the attempt before (a first attempt has none: no statement)
        await tx.many(sql.DELETE_OUTPUT, [(t.id,) for t, _ in claims if t.attempt > 0])
        await tx.many(
            sql.INSERT_ATTEMPT,
            [(t.id, t.attempt + 1, w, state, now, int(w in announcing)) for t, w in claims],
        )
        # each row as CLAIM left it (read under the claim's lock: nothing else changed it)
        return [
            dataclasses.replace(
                t,
                state=assigned,
                attempt=t.attempt + 1,
                worker_id=w,
                assigned_at=now,
                started_at=None,
                finished_at=None,
                exit_code=None,
                signal=None,
                error=None,
                unschedulable=None,
            )
            for t, w in claims
        ]


def _candidate(r: Sequence[Any]) -> Candidate:
    return Candidate(
        task_id=r[0],
        priority=r[1],
        seq=r[2],
        labels=orjson.loads(r[3]),
        legacy_ok=bool(r[4]),
        unschedulable=r[6],
        owner=r[7],
        queue=r[8],
        **placement_from_json(r[5]),
    )


async def _active(tx: Tx, heads: Iterable[Sequence[Candidate]] = ()) -> Active:
    """What is assigned or running, counted per owner, queue and concurrency key (a scan of
    the active tasks only: at most the grid's slots), and the limits of the keys `heads`
    name (one read a key)."""
    owners: Counter[str] = Counter()
    queues: Counter[str] = Counter()
    keys: Counter[str] = Counter()
    for owner, queue, placement in await tx.all(sql.SELECT_RUNNING_BY):
        owners[owner] += 1
        queues[queue] += 1
        if '"concurrency"' in placement:
            concurrency = placement_from_json(placement)["concurrency"]
            keys[concurrency.counted] += 1
    named = {c.concurrency for lane in heads for c in lane if c.concurrency is not None}
    limits: dict[str, int] = {}
    for concurrency in named:
        if concurrency.counted not in limits:
            row = await tx.one(sql.SELECT_CONCURRENCY_LIMIT, concurrency.scope, concurrency.key)
            limits[concurrency.counted] = int(row[0]) if row is not None else concurrency.limit
    return Active(owners, queues, keys, limits)


async def _quotas(tx: Tx) -> list[Quota]:
    return [Quota(*r) for r in await tx.all(sql.SELECT_QUOTAS)]


def lane_from_key(key: str) -> Lane:
    """A lane from its key, the `lane` column: owner, queue, labels, legacy_ok and
    placement, each as stored, joined by newlines (names and JSON text hold none)."""
    owner, queue, labels, legacy_ok, placement = key.split("\n", 4)
    probe = Candidate(
        task_id="",
        priority=0,
        seq=0,
        labels=orjson.loads(labels),
        legacy_ok=legacy_ok == "1",
        unschedulable=None,
        owner=owner,
        queue=queue,
        **placement_from_json(placement),
    )
    return Lane(key, probe)


async def _exists(tx: Tx, query: str, *args: Any) -> bool:
    return await tx.one(query, *args) is not None
