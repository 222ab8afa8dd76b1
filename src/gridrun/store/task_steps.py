"""The steps every group of store verbs builds on (one object the groups share): loading a task
and checking who holds its attempt, inserting tasks with their dependencies, and the notices
that tell other masters (and waiters here) what changed."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from gridrun.errors import ConcurrencyConflict, TaskNotFound
from gridrun.model import TERMINAL, AttemptRef, Concurrency, Task, TaskState
from gridrun.store import NewTask, Notice, NoticeKind, dependencies
from gridrun.store import queries as sql
from gridrun.store.files import hold_inputs
from gridrun.store.relational_tx import Db, Tx
from gridrun.store.rows import labels_to_json, placement_to_json, spec_to_json, task_from_row


class TaskSteps:
    """Steps several groups of verbs take inside their transactions."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def notice(self, tx: Tx, kind: NoticeKind, subject: str = "") -> None:
        await tx.notify(str(Notice(self._db.origin, kind, subject)))

    async def load(self, tx: Tx, task_id: str, lock: str = "") -> Task:
        row = await tx.one(sql.SELECT_TASK + lock, task_id)
        if row is None:
            raise TaskNotFound(f"no task with id {task_id!r}")
        return task_from_row(row)

    async def held(self, tx: Tx, ref: AttemptRef, worker_id: str) -> Task | None:
        """The task, if this worker holds the current attempt named; a report naming any
        other attempt, or a task that does not exist, is stale."""
        row = await tx.one(sql.SELECT_TASK + self._db.dialect.lock, ref.task_id)
        if row is None:
            return None
        task = task_from_row(row)
        return task if task.held_by(ref, worker_id) else None

    def select_active(self) -> str:
        """A worker's assigned and running tasks, read through their partial index."""
        return sql.SELECT_ACTIVE.format(index=self._db.dialect.use_index("tasks_active"))

    async def changed(self, tx: Tx, task: Task) -> Task:
        await self.notice(tx, NoticeKind.TASK, task.id)
        return task

    async def insert(
        self, tx: Tx, tasks: Sequence[NewTask], now: int, adopt_limits: bool = False
    ) -> list[Task]:
        if any(t.spec.concurrency is not None for t in tasks):
            tasks = await self.scope_keys(tx, tasks, adopt_limits)
        rows = [
            (
                t.id,
                t.spec.name,
                spec_to_json(t.spec),
                t.spec.priority,
                labels_to_json(t.spec.labels),
                int(t.spec.legacy_ok),
                now,
                now + round(t.spec.queue_timeout_s * 1000) if t.spec.queue_timeout_s else None,
                t.spec.idempotency_key,
                placement_to_json(t.spec),
                t.spec.job,
                t.spec.owner,
                t.spec.queue,
                round(t.spec.retain_s * 1000) if t.spec.retain_s is not None else None,
                t.spec.job_index,
            )
            for t in tasks
        ]

        def fresh(t: NewTask, seq: int) -> Task:
            return Task(id=t.id, seq=seq, spec=t.spec, state=TaskState.QUEUED, created_at=now)

        await self.notice(tx, NoticeKind.QUEUED)
        if not any(t.spec.idempotency_key is not None for t in tasks):
            seqs = await tx.insert_tasks(rows)
            added = [fresh(t, seq) for t, seq in zip(tasks, seqs, strict=True)]
        else:
            added = []
            for t, row in zip(tasks, rows, strict=True):
                key = t.spec.idempotency_key
                existing = key and await tx.one(sql.SELECT_TASK_BY_KEY, t.spec.owner, key)
                if existing:
                    added.append(task_from_row(existing))
                    continue
                (seq,) = await tx.insert_tasks([row])
                added.append(fresh(t, seq))
        if any(t.spec.after for t in tasks):
            added = await self._link(tx, tasks, added, now)
        if any(t.spec.inputs for t in tasks):  # (a task let stand by its key holds its own)
            new = {t.id for t in tasks}
            uses = [
                (a.id, a.spec.owner, [f.digest for f in a.spec.inputs])
                for a in added
                if a.id in new
            ]
            await hold_inputs(tx, uses)
        return added

    async def scope_keys(
        self, tx: Tx, tasks: Sequence[NewTask], adopt_limits: bool
    ) -> list[NewTask]:
        """Each task's concurrency key made its owner's, or the grid-wide key an admin
        declared under that name; a key first named here is declared with the task's limit.
        A task naming another limit than its key's is refused (ConcurrencyConflict), unless
        `adopt_limits` (a schedule's slot, whose spec was accepted when the schedule was
        made): then it takes the key's limit."""
        scoped: list[NewTask] = []
        known: dict[tuple[str, str], tuple[str, int]] = {}  # (owner, key) -> (scope, limit)
        for t in tasks:
            asked = t.spec.concurrency
            if asked is None:
                scoped.append(t)
                continue
            if (t.spec.owner, asked.key) not in known:  # (a batch shares its keys' reads)
                known[t.spec.owner, asked.key] = await self._key(tx, t.spec.owner, asked)
            scope, limit = known[t.spec.owner, asked.key]
            if limit != asked.limit and not adopt_limits:
                whose = "the grid-wide key" if not scope else f"owner {scope}'s key"
                raise ConcurrencyConflict(
                    f"concurrency key {asked.key!r} is {whose} with limit {limit}; this task"
                    f" says {asked.limit} (give {limit}, or another key)"
                )
            concurrency = Concurrency(asked.key, limit, scope)
            scoped.append(NewTask(t.id, dataclasses.replace(t.spec, concurrency=concurrency)))
        return scoped

    async def _key(self, tx: Tx, owner: str, asked: Concurrency) -> tuple[str, int]:
        """(scope, limit) of the key a task of `owner` names: the grid-wide one, else the
        owner's, declared now with the task's limit if it is new."""
        row = await tx.one(sql.SELECT_CONCURRENCY_LIMIT, "", asked.key)
        if row is not None:
            return "", int(row[0])
        row = await tx.one(sql.SELECT_CONCURRENCY_LIMIT, owner, asked.key)
        if row is not None:
            return owner, int(row[0])
        await tx.run(sql.INSERT_CONCURRENCY_KEY, owner, asked.key, asked.limit)
        return owner, asked.limit

    async def _link(
        self, tx: Tx, tasks: Sequence[NewTask], added: list[Task], now: int
    ) -> list[Task]:
        """Record what the inserted tasks run after; a member of the batch replaced by an
        existing task (its idempotency key) stands for it."""
        actual = {t.id: a.id for t, a in zip(tasks, added, strict=True)}
        inserted = [(t, a) for t, a in zip(tasks, added, strict=True) if a.id == t.id]
        order = dependencies.in_order(
            [a.id for _, a in inserted],
            [tuple(actual.get(x, x) for x in t.spec.after) for t, _ in inserted],
        )
        starts = await dependencies.link(tx, self._db.dialect.lock, order, now, self.notice)
        return [await self.load(tx, a.id) if a.id in starts else a for a in added]

    async def ended(self, tx: Tx, task_id: str, state: TaskState, now: int) -> None:
        if state in TERMINAL:
            await dependencies.ended(tx, self._db.dialect, task_id, state, now, self.notice)
