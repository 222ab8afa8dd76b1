"""The store's job verbs (`store.jobs`): a job (an array, a --file batch, a broadcast) read
as a whole, listed, and its tasks cancelled or run again in one transaction; and tasks
cancelled by any filter (bulk cancel)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from gridrun.errors import JobNotFound
from gridrun.model import ACTIVE, TERMINAL, Task, TaskState
from gridrun.store import JobSummary, NoticeKind, TaskFilter, short_ids
from gridrun.store import queries as sql
from gridrun.store.relational_tx import Db, Tx, marks
from gridrun.store.rows import task_from_row
from gridrun.store.task_steps import TaskSteps
from gridrun.store.tasks import matching

# past this many tasks changed by one step, one `resync` notice (every master looks at all it
# watches) stands for a `task` notice each
BULK_NOTICES = 500
UNSUCCESSFUL = tuple(
    str(s) for s in (TaskState.FAILED, TaskState.TIMED_OUT, TaskState.LOST, TaskState.CANCELLED,
                     TaskState.REJECTED, TaskState.EXPIRED, TaskState.SKIPPED)
)  # fmt: skip
_RERUN = (
    "UPDATE tasks SET state = 'queued', worker_id = NULL, cancel_requested = 0,"
    " assigned_at = NULL, started_at = NULL, finished_at = NULL, exit_code = NULL,"
    " signal = NULL, error = NULL, not_before = 0, unschedulable = NULL, cpu_s = NULL,"
    " peak_memory_bytes = NULL, expires_at = ? WHERE id = ?"
)


class JobVerbs:
    def __init__(self, db: Db, steps: TaskSteps) -> None:
        self._db = db
        self._steps = steps

    async def resolve_id(self, given: str) -> str:
        """The whole id of the job a unique prefix or tail names (see short_ids)."""
        return await self._db.read(lambda tx: short_ids.resolve(tx, given, "job_id", "job"))

    async def summary(self, job_id: str, unsuccessful: int = 1000) -> JobSummary:
        """The job's counts per state and its first task; the first `unsuccessful` of its
        ended tasks that did not succeed, by index. JobNotFound if it has no task."""

        async def read(tx: Tx) -> JobSummary:
            return await self._summary(tx, job_id, unsuccessful)

        return await self._db.read(read)

    async def _summary(self, tx: Tx, job_id: str, unsuccessful: int) -> JobSummary:
        index = self._db.dialect.use_index("tasks_by_job")
        row = await tx.one(
            f"SELECT {sql.TASK_COLUMNS} FROM tasks {index} WHERE job_id = ? ORDER BY seq LIMIT 1",
            job_id,
        )
        if row is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        counts = {
            TaskState(state): int(n)
            for state, n in await tx.all(
                "SELECT state, count(*) FROM tasks WHERE job_id = ? GROUP BY state", job_id
            )
        }
        bad = []
        if unsuccessful and any(counts.get(TaskState(s)) for s in UNSUCCESSFUL):
            bad = [
                task_from_row(r)
                for r in await tx.all(
                    f"SELECT {sql.TASK_COLUMNS} FROM tasks WHERE job_id = ?"
                    f" AND state IN ({marks(len(UNSUCCESSFUL))}) ORDER BY job_index, seq LIMIT ?",
                    job_id,
                    *UNSUCCESSFUL,
                    unsuccessful,
                )
            ]
        return JobSummary(job_id, task_from_row(row), sum(counts.values()), counts, bad)

    async def cells(self, job_id: str, limit: int) -> list[tuple[str, int | None, TaskState]]:
        """(id, index, state) of the job's first `limit` tasks by index (a broadcast's, which
        have none, by creation): what the dashboard draws one cell each."""

        async def read(tx: Tx) -> list[tuple[str, int | None, TaskState]]:
            rows = await tx.all(
                "SELECT id, job_index, state FROM tasks WHERE job_id = ?"
                " ORDER BY job_index, seq LIMIT ?",
                job_id,
                limit,
            )
            return [(i, None if n is None else int(n), TaskState(s)) for i, n, s in rows]

        return await self._db.read(read)

    async def list_jobs(self, limit: int, owner: str | None = None) -> list[JobSummary]:
        """The newest jobs first (by their first task), each summed up (no unsuccessful)."""

        async def read(tx: Tx) -> list[JobSummary]:
            where = "job_id IS NOT NULL" + (" AND owner = ?" if owner is not None else "")
            args = [owner] if owner is not None else []
            ids = await tx.all(
                f"SELECT job_id FROM tasks WHERE {where} GROUP BY job_id"
                " ORDER BY min(seq) DESC LIMIT ?",
                *args,
                limit,
            )
            return [await self._summary(tx, job_id, 0) for (job_id,) in ids]

        return await self._db.read(read)

    async def cancel(self, flt: TaskFilter, now: int) -> list[Task]:
        """Cancel every task the filter matches that has not ended: waiting and queued ones
        now, active ones flagged for their workers (as request_cancel does one). The tasks
        as they were before (for the caller's count and audit)."""
        states = [s for s in flt.states or list(TaskState) if s not in TERMINAL]
        if not states:
            return []
        where, args = matching(dataclasses.replace(flt, states=states), self._db.dialect)

        async def cancel(tx: Tx) -> list[Task]:
            query = f"SELECT {sql.TASK_COLUMNS} FROM tasks WHERE {' AND '.join(where)}"
            found = [task_from_row(r) for r in await tx.all(query + self._db.dialect.lock, *args)]
            now_ended = [t for t in found if t.state not in ACTIVE]
            await tx.many(
                sql.END,
                [
                    (str(TaskState.CANCELLED), now, "cancelled before it started", t.id)
                    for t in now_ended
                ],
            )
            for task in now_ended:
                await self._steps.ended(tx, task.id, TaskState.CANCELLED, now)
            active = [t for t in found if t.state in ACTIVE and not t.cancel_requested]
            await tx.many(sql.FLAG_CANCEL, [(t.id,) for t in active])
            for task in active:  # whichever master holds its worker stops it
                await self._steps.notice(tx, NoticeKind.CANCEL, task.id)
            await self._changed(tx, found)
            return found

        return await self._db.write(cancel)

    async def rerun(
        self, job_id: str, states: Collection[TaskState], now: int
    ) -> tuple[JobSummary, list[Task]]:
        """Queue again the job's ended tasks in these states, each for a new attempt (its
        output so far deleted, as a retry does); the job before, and the tasks run again."""

        async def rerun(tx: Tx) -> tuple[JobSummary, list[Task]]:
            before = await self._summary(tx, job_id, 0)
            wanted = [str(s) for s in states if s in TERMINAL and s is not TaskState.SUCCEEDED]
            if not wanted:
                return before, []
            query = (
                f"SELECT {sql.TASK_COLUMNS} FROM tasks WHERE job_id = ?"
                f" AND state IN ({marks(len(wanted))})"
            )
            again = [
                task_from_row(r)
                for r in await tx.all(query + self._db.dialect.lock, job_id, *wanted)
            ]
            rows = []
            for task in again:
                timeout = task.spec.queue_timeout_s
                rows.append((now + round(timeout * 1000) if timeout else None, task.id))
            await tx.many(_RERUN, rows)
            await tx.many(sql.DELETE_OUTPUT, [(t.id,) for t in again])
            if again:
                await self._steps.notice(tx, NoticeKind.QUEUED)
            await self._changed(tx, again)
            return before, again

        return await self._db.write(rerun)

    async def _changed(self, tx: Tx, tasks: list[Task]) -> None:
        """Wake whoever waits on or follows these tasks, on every master."""
        if len(tasks) > BULK_NOTICES:
            await self._steps.notice(tx, NoticeKind.RESYNC)
            return
        for task in tasks:
            await self._steps.notice(tx, NoticeKind.TASK, task.id)
