"""The store's task verbs (`store.tasks`, one object over the backend): tasks as clients see
them, submitted, read, listed, cancelled, and expired from the queue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gridrun.errors import InvalidTransition
from gridrun.model import ACTIVE, Attempt, Stream, StreamOutput, Task, TaskState, transition
from gridrun.store import NewTask, NoticeKind, Page, TaskFilter, TaskOrder, TaskOutput, short_ids
from gridrun.store import queries as sql
from gridrun.store.relational_tx import Db, Dialect, Tx, marks
from gridrun.store.rows import attempt_from_row, marks_from_json, output_marks, task_from_row
from gridrun.store.task_steps import TaskSteps

EXPIRE_BATCH = 1000
# what a listing by `order` sorts on (a column expression of tasks)
ORDERS = {
    "duration": "finished_at - started_at",
    "cpu": "cpu_s",
    "memory": "peak_memory_bytes",
}


def matching(flt: TaskFilter, dialect: Dialect) -> tuple[list[str], list[Any]]:
    """The WHERE terms (ANDed) and their arguments of the tasks a filter matches."""
    where: list[str] = []
    args: list[Any] = []
    if flt.states:
        where.append(f"state IN ({marks(len(flt.states))})")
        args.extend(str(s) for s in flt.states)
    for column, value in (
        ("worker_id", flt.worker_id), ("name", flt.name), ("job_id", flt.job),
        ("job_index", flt.job_index), ("owner", flt.owner), ("queue", flt.queue),
    ):  # fmt: skip
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    for key, value in flt.labels.items():
        where.append(dialect.label_clause)
        args.extend((key, value))
    for bound, at in (("created_at >= ?", flt.since), ("created_at < ?", flt.until)):
        if at is not None:
            where.append(bound)
            args.append(at)
    return where, args


class TaskVerbs:
    def __init__(self, db: Db, steps: TaskSteps) -> None:
        self._db = db
        self._steps = steps

    async def add_tasks(self, tasks: Sequence[NewTask], now: int) -> list[Task]:
        """Insert the tasks in one transaction. A task whose idempotency key is already taken
        (earlier, or by another task of this batch) is not inserted: the existing task stands in
        its place in the answer, so callers see a different id than they proposed."""
        return await self._db.write(lambda tx: self._steps.insert(tx, tasks, now))

    async def resolve_id(self, given: str) -> str:
        """The whole id of the task a unique prefix or tail names (see short_ids)."""
        return await self._db.read(lambda tx: short_ids.resolve(tx, given, "id", "task"))

    async def get_task(self, task_id: str) -> Task:
        return await self._db.read(lambda tx: self._steps.load(tx, task_id))

    async def get_attempts(self, task_id: str) -> list[Attempt]:
        async def read(tx: Tx) -> list[Attempt]:
            await self._steps.load(tx, task_id)
            return [attempt_from_row(r) for r in await tx.all(sql.SELECT_ATTEMPTS, task_id)]

        return await self._db.read(read)

    async def list_tasks(
        self, flt: TaskFilter, limit: int, before: int | None, order: TaskOrder = "created"
    ) -> Page:
        where, args = matching(flt, self._db.dialect)
        if before is not None and order == "created":
            where.append("seq < ?")
            args.append(before)
        query = f"SELECT {sql.TASK_COLUMNS} FROM tasks"
        if where:
            query += " WHERE " + " AND ".join(where)
        if order == "created":
            query += " ORDER BY seq DESC LIMIT ?"
        else:  # the largest first; those without the figure (not run, not measured) last
            taken = ORDERS[order]
            query += f" ORDER BY ({taken}) IS NULL, {taken} DESC, seq DESC LIMIT ?"
        args.append(limit + 1)

        async def page(tx: Tx) -> Page:
            tasks = [task_from_row(r) for r in await tx.all(query, *args)]
            more = len(tasks) > limit and order == "created"
            tasks = tasks[:limit]
            return Page(tasks=tasks, next_cursor=tasks[-1].seq if more else None)

        return await self._db.read(page)

    async def get_output(self, task_id: str) -> TaskOutput:
        async def read(tx: Tx) -> TaskOutput:
            await self._steps.load(tx, task_id)
            rows = await tx.all(sql.SELECT_OUTPUT, task_id)
            streams = {stream: StreamOutput(bytes(data), total) for stream, data, total, _ in rows}
            return TaskOutput(
                stdout=streams.get(Stream.STDOUT, StreamOutput()),
                stderr=streams.get(Stream.STDERR, StreamOutput()),
                marks=output_marks([(s, marks_from_json(m)) for s, _, _, m in rows]),
            )

        return await self._db.read(read)

    async def request_cancel(self, task_id: str, now: int) -> Task:
        async def cancel(tx: Tx) -> Task:
            task = await self._steps.load(tx, task_id, self._db.dialect.lock)
            if task.terminal:  # (a second cancel said "a cancelled task cannot become cancelled")
                raise InvalidTransition(f"task {task_id} has already ended ({task.state})")
            if task.state in ACTIVE:
                await tx.run(sql.FLAG_CANCEL, task_id)
                await self._steps.notice(
                    tx, NoticeKind.CANCEL, task_id
                )  # whichever master holds the worker
            else:
                state = transition(task.state, TaskState.CANCELLED)
                await tx.run(sql.END, str(state), now, "cancelled before it started", task_id)
                await self._steps.ended(tx, task_id, state, now)
            return await self._steps.changed(tx, await self._steps.load(tx, task_id))

        return await self._db.write(cancel)

    async def count_by_state(self) -> dict[TaskState, int]:
        async def count(tx: Tx) -> dict[TaskState, int]:
            return {TaskState(s): n for s, n in await tx.all(self._db.dialect.count_by_state)}

        return await self._db.read(count)

    async def expire(self, now: int) -> list[Task]:
        async def expire(tx: Tx) -> list[Task]:
            expired: list[Task] = []
            index = self._db.dialect.use_index("tasks_expiry")
            query = sql.SELECT_EXPIRED.format(index=index) + self._db.dialect.skip_locked
            for row in await tx.all(query, now, EXPIRE_BATCH):
                task = task_from_row(row)
                state = transition(task.state, TaskState.EXPIRED)
                limit = task.spec.queue_timeout_s or 0
                reason = f"not started within its queue timeout of {limit:g}s"
                await tx.run(sql.END, str(state), now, reason, task.id)
                await self._steps.ended(tx, task.id, state, now)
                expired.append(await self._steps.changed(tx, await self._steps.load(tx, task.id)))
            return expired

        return await self._db.write(expire)
