"""The domain verbs of the SQL stores, written once over a small transaction interface (`Tx`).

`SqliteStore` and `PostgresStore` differ only in how a step reaches its database (a thread and
group commit, or a connection pool), in their DDL, and in a `Dialect`: the row locks PostgreSQL
needs because several masters write at once (`FOR UPDATE`, `SKIP LOCKED` for claims). Each verb
runs as one transaction given by the backend; its notices (`Tx.notify`) reach other masters
only if it commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import orjson

from gridrun.errors import TaskNotFound
from gridrun.model import (
    ACTIVE,
    TERMINAL,
    Attempt,
    AttemptRef,
    Outcome,
    Report,
    StreamOutput,
    Task,
    TaskState,
    settle,
    state_after,
    transition,
)
from gridrun.store import (
    Candidate,
    Finish,
    NewTask,
    Notice,
    Page,
    Placed,
    Placer,
    TaskFilter,
    TaskOutput,
    dependencies,
)
from gridrun.store import queries as sql
from gridrun.store.relational_tx import TASKS_BY_ID, Dialect, Tx, marks
from gridrun.store.rows import (
    attempt_from_row,
    attempt_key,
    describe,
    labels_to_json,
    placement_from_json,
    placement_to_json,
    spec_to_json,
    task_from_row,
)
from gridrun.store.schedules import ScheduleVerbs
from gridrun.store.workers import WorkerVerbs

T = TypeVar("T")
EXPIRE_BATCH = 1000


class RelationalStore(ScheduleVerbs, WorkerVerbs):
    """`Store` over any backend providing `_read` and `_write` of one step."""

    dialect = Dialect()
    shared = False  # True where several masters may use one database at once

    def __init__(self, origin: str) -> None:
        self.origin = origin  # this master, in notices and worker leases

    async def _notice(self, tx: Tx, kind: str, subject: str = "") -> None:
        await tx.notify(str(Notice(self.origin, kind, subject)))

    async def _load(self, tx: Tx, task_id: str, lock: str = "") -> Task:
        row = await tx.one(sql.SELECT_TASK + lock, task_id)
        if row is None:
            raise TaskNotFound(f"no task with id {task_id!r}")
        return task_from_row(row)

    async def _held(self, tx: Tx, ref: AttemptRef, worker_id: str) -> Task | None:
        """The task, if this worker holds the current attempt named; a report naming any
        other attempt, or a task that does not exist, is stale."""
        row = await tx.one(sql.SELECT_TASK + self.dialect.lock, ref.task_id)
        if row is None:
            return None
        task = task_from_row(row)
        return task if task.held_by(ref, worker_id) else None

    def _select_active(self) -> str:
        """A worker's assigned and running tasks, read through their partial index."""
        return sql.SELECT_ACTIVE.format(index=self.dialect.use_index("tasks_active"))

    async def _changed(self, tx: Tx, task: Task) -> Task:
        await self._notice(tx, "task", task.id)
        return task

    # ---- tasks, client side

    async def add_tasks(self, tasks: Sequence[NewTask], now: int) -> list[Task]:
        """Insert the tasks in one transaction. A task whose idempotency key is already taken
        (earlier, or by another task of this batch) is not inserted: the existing task stands in
        its place in the answer, so callers see a different id than they proposed."""
        return await self._write(lambda tx: self._insert(tx, tasks, now))

    async def _insert(self, tx: Tx, tasks: Sequence[NewTask], now: int) -> list[Task]:
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
            )
            for t in tasks
        ]

        def fresh(t: NewTask, seq: int) -> Task:
            return Task(id=t.id, seq=seq, spec=t.spec, state=TaskState.QUEUED, created_at=now)

        await self._notice(tx, "queued")
        if not any(t.spec.idempotency_key is not None for t in tasks):
            seqs = await tx.insert_tasks(rows)
            added = [fresh(t, seq) for t, seq in zip(tasks, seqs, strict=True)]
        else:
            added = []
            for t, row in zip(tasks, rows, strict=True):
                key = t.spec.idempotency_key
                existing = key and await tx.one(sql.SELECT_TASK_BY_KEY, key)
                if existing:
                    added.append(task_from_row(existing))
                    continue
                (seq,) = await tx.insert_tasks([row])
                added.append(fresh(t, seq))
        if any(t.spec.after for t in tasks):
            added = await self._link(tx, tasks, added, now)
        return added

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
        starts = await dependencies.link(tx, self.dialect.lock, order, now, self._notice)
        return [await self._load(tx, a.id) if a.id in starts else a for a in added]

    async def _ended(self, tx: Tx, task_id: str, state: TaskState, now: int) -> None:
        if state in TERMINAL:
            await dependencies.ended(tx, self.dialect, task_id, state, now, self._notice)

    async def get_task(self, task_id: str) -> Task:
        return await self._read(lambda tx: self._load(tx, task_id))

    async def get_attempts(self, task_id: str) -> list[Attempt]:
        async def read(tx: Tx) -> list[Attempt]:
            await self._load(tx, task_id)
            return [attempt_from_row(r) for r in await tx.all(sql.SELECT_ATTEMPTS, task_id)]

        return await self._read(read)

    async def list_tasks(self, flt: TaskFilter, limit: int, before: int | None) -> Page:
        where: list[str] = []
        args: list[Any] = []
        if flt.states:
            where.append(f"state IN ({marks(len(flt.states))})")
            args.extend(str(s) for s in flt.states)
        if flt.worker_id is not None:
            where.append("worker_id = ?")
            args.append(flt.worker_id)
        if flt.name is not None:
            where.append("name = ?")
            args.append(flt.name)
        if flt.job is not None:
            where.append("job_id = ?")
            args.append(flt.job)
        for key, value in flt.labels.items():
            where.append(self.dialect.label_clause)
            args.extend((key, value))
        if before is not None:
            where.append("seq < ?")
            args.append(before)
        query = f"SELECT {sql.TASK_COLUMNS} FROM tasks"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY seq DESC LIMIT ?"
        args.append(limit + 1)

        async def page(tx: Tx) -> Page:
            tasks = [task_from_row(r) for r in await tx.all(query, *args)]
            more = len(tasks) > limit
            tasks = tasks[:limit]
            return Page(tasks=tasks, next_cursor=tasks[-1].seq if more else None)

        return await self._read(page)

    async def get_output(self, task_id: str) -> TaskOutput:
        async def read(tx: Tx) -> TaskOutput:
            await self._load(tx, task_id)
            streams = {
                stream: StreamOutput(bytes(data), total)
                for stream, data, total in await tx.all(sql.SELECT_OUTPUT, task_id)
            }
            return TaskOutput(
                stdout=streams.get(1, StreamOutput()), stderr=streams.get(2, StreamOutput())
            )

        return await self._read(read)

    async def request_cancel(self, task_id: str, now: int) -> Task:
        async def cancel(tx: Tx) -> Task:
            task = await self._load(tx, task_id, self.dialect.lock)
            if task.state in ACTIVE:
                await tx.run(sql.FLAG_CANCEL, task_id)
                await self._notice(tx, "cancel", task_id)  # whichever master holds the worker
            else:
                state = transition(task.state, TaskState.CANCELLED)
                await tx.run(sql.END, str(state), now, "cancelled before it started", task_id)
                await self._ended(tx, task_id, state, now)
            return await self._changed(tx, await self._load(tx, task_id))

        return await self._write(cancel)

    async def count_by_state(self) -> dict[TaskState, int]:
        async def count(tx: Tx) -> dict[TaskState, int]:
            return {TaskState(s): n for s, n in await tx.all(self.dialect.count_by_state)}

        return await self._read(count)

    async def fold_counts(self) -> None:
        """Nothing to fold where the counts are kept in place (SQLite)."""

    async def expire(self, now: int) -> list[Task]:
        async def expire(tx: Tx) -> list[Task]:
            expired: list[Task] = []
            index = self.dialect.use_index("tasks_expiry")
            query = sql.SELECT_EXPIRED.format(index=index) + self.dialect.skip_locked
            for row in await tx.all(query, now, EXPIRE_BATCH):
                task = task_from_row(row)
                state = transition(task.state, TaskState.EXPIRED)
                limit = task.spec.queue_timeout_s or 0
                reason = f"not started within its queue timeout of {limit:g}s"
                await tx.run(sql.END, str(state), now, reason, task.id)
                await self._ended(tx, task.id, state, now)
                expired.append(await self._changed(tx, await self._load(tx, task.id)))
            return expired

        return await self._write(expire)

    # ---- scheduling

    async def queued(self, limit: int, after: tuple[int, int] | None, now: int) -> list[Candidate]:
        return await self._read(lambda tx: self._queued(tx, limit, after, now))

    async def place_and_claim(
        self, limit: int, after: tuple[int, int] | None, now: int, place: Placer
    ) -> tuple[list[Candidate], Placed, list[Task]]:
        """Read up to `limit` queued tasks (after (priority, seq)), claim what `place` picks,
        in one transaction: a dispatch pass without a separate read."""

        async def step(tx: Tx) -> tuple[list[Candidate], Placed, list[Task]]:
            candidates = await self._queued(tx, limit, after, now)
            placed = place(candidates)
            if not placed:
                return candidates, placed, []
            claimed = await self._claim(tx, [(c.task_id, w) for c, w in placed], now)
            return candidates, placed, claimed

        return await self._write(step)

    async def _queued(
        self, tx: Tx, limit: int, after: tuple[int, int] | None, now: int
    ) -> list[Candidate]:
        if after is None:
            query = sql.SELECT_QUEUED.format(index=self.dialect.use_index("tasks_queue"), after="")
            args: tuple[int, ...] = (now, limit)
        else:
            priority, seq = after
            query = sql.SELECT_QUEUED.format(
                index=self.dialect.use_index("tasks_queue"), after=sql.QUEUED_AFTER
            )
            args = (now, priority, priority, seq, limit)
        return [
            Candidate(
                task_id=r[0],
                priority=r[1],
                seq=r[2],
                selector=orjson.loads(r[3]),
                legacy_ok=bool(r[4]),
                unschedulable=r[6],
                **placement_from_json(r[5]),
            )
            for r in await tx.all(query, *args)
        ]

    async def mark_unschedulable(self, reasons: Sequence[tuple[str, str | None]]) -> None:
        if not reasons:
            return

        async def mark(tx: Tx) -> None:
            await tx.many(sql.MARK_UNSCHEDULABLE, [(why, task_id) for task_id, why in reasons])
            for task_id, _ in reasons:
                await self._notice(tx, "task", task_id)

        await self._write(mark)

    async def retry_due(self, now: int) -> bool:
        """True if a task waiting out a retry backoff may be claimed now."""
        return await self._read(
            lambda tx: _exists(
                tx, sql.SELECT_DUE.format(index=self.dialect.use_index("tasks_retry")), now
            )
        )

    async def claim(self, assignments: Sequence[tuple[str, str]], now: int) -> list[Task]:
        """Claim those of the (task_id, worker_id) pairs whose task is still queued and whose
        worker is still leased to this master. Tasks another master is claiming right now are
        skipped, not waited for."""
        if not assignments:
            return []
        return await self._write(lambda tx: self._claim(tx, assignments, now))

    async def _claim(self, tx: Tx, assignments: Sequence[tuple[str, str]], now: int) -> list[Task]:
        worker_ids = sorted({w for _, w in assignments})
        task_ids = [t for t, _ in assignments]
        query = sql.SELECT_WORKER_MASTERS.format(marks=marks(len(worker_ids)))
        owned = {
            w
            for w, master in await tx.all(query + self.dialect.share_lock, *worker_ids)
            if master == self.origin
        }
        by_id = self.dialect.use_index(TASKS_BY_ID)
        query = sql.SELECT_CLAIMABLE.format(index=by_id, marks=marks(len(task_ids)))
        rows = await tx.all(query + self.dialect.skip_locked, *task_ids)
        queued = {t.id: t for t in map(task_from_row, rows)}
        claims = [
            (queued[task_id], worker_id)
            for task_id, worker_id in assignments
            if task_id in queued and worker_id in owned
        ]
        state = str(transition(TaskState.QUEUED, TaskState.ASSIGNED))
        await tx.many(sql.CLAIM, [(state, w, now, t.id) for t, w in claims])
        await tx.many(sql.DELETE_OUTPUT, [(t.id,) for t, _ in claims])
        await tx.many(sql.INSERT_ATTEMPT, [(t.id, t.attempt + 1, w, state, now) for t, w in claims])
        if not claims:
            return []
        query = sql.SELECT_TASKS.format(marks=marks(len(claims)))
        claimed = {
            t.id: t for t in map(task_from_row, await tx.all(query, *(t.id for t, _ in claims)))
        }
        for task_id in claimed:
            await self._notice(tx, "task", task_id)
        return [claimed[t.id] for t, _ in claims]

    # ---- worker reports

    async def record_start(self, ref: AttemptRef, worker_id: str, started_at: int) -> bool:
        async def start(tx: Tx) -> bool:
            task = await self._held(tx, ref, worker_id)
            if task is None:
                return False
            if task.state is TaskState.ASSIGNED:
                state = transition(task.state, TaskState.RUNNING)
                await tx.run(sql.START, str(state), started_at, ref.task_id)
                await tx.run(sql.START_ATTEMPT, str(state), started_at, *attempt_key(ref))
                await self._notice(tx, "task", ref.task_id)
            return True

        return await self._write(start)

    async def append_output(
        self,
        ref: AttemptRef,
        worker_id: str,
        chunks: Sequence[tuple[int, int, bytes]],
        cap: int,
    ) -> bool:
        async def append(tx: Tx) -> bool:
            if await self._held(tx, ref, worker_id) is None:
                return False
            streams = {
                s: StreamOutput(bytes(d), t)
                for s, d, t in await tx.all(sql.SELECT_OUTPUT, ref.task_id)
            }
            for stream, offset, data in chunks:
                streams[stream] = streams.get(stream, StreamOutput()).append(offset, data, cap)
            await tx.many(
                sql.UPSERT_OUTPUT,
                [(ref.task_id, s, out.data, out.total) for s, out in streams.items()],
            )
            await self._notice(tx, "task", ref.task_id)
            return True

        return await self._write(append)

    async def _end_attempt(
        self, tx: Tx, task: Task, ended: TaskState, report: Report, now: int
    ) -> None:
        """Record how the current attempt ended; move the task on (maybe back to the queue)."""
        ref = task.ref
        finished_at = report.finished_at or now
        error = report.error or None
        await tx.run(
            sql.END_ATTEMPT, str(ended), report.started_at, finished_at, report.exit_code,
            report.signal, error, *attempt_key(ref),
        )  # fmt: skip
        await self._notice(tx, "task", task.id)
        if ended is TaskState.QUEUED:  # nothing ran (no free slot): back in line, not a try
            await tx.run(sql.REQUEUE, str(transition(task.state, ended)), 0, error, task.id)
            await self._notice(tx, "queued")
            return
        row = await tx.one(sql.COUNT_TRIES, task.id, task.attempt)
        assert row is not None
        state, delay = settle(task, ended, report.exit_code, row[0] + 1)
        if state is TaskState.QUEUED:
            assert delay is not None
            why = describe(ended, report)
            note = f"attempt {task.attempt} {why}; retrying in {delay:g}s"
            await tx.run(sql.REQUEUE, str(state), now + round(delay * 1000), note, task.id)
        else:
            await tx.run(
                sql.FINISH, str(state), report.started_at, finished_at, report.exit_code,
                report.signal, error, task.id,
            )  # fmt: skip
            await self._ended(tx, task.id, state, now)

    async def record_finish(
        self, ref: AttemptRef, worker_id: str, report: Report, now: int
    ) -> Finish:
        async def finish(tx: Tx) -> Finish:
            task = await self._held(tx, ref, worker_id)
            if task is None:
                return Finish(task=None, applied=False)
            ended = state_after(report)
            if ended is TaskState.QUEUED and task.cancel_requested:
                ended = TaskState.CANCELLED
            await self._end_attempt(tx, task, ended, report, now)
            return Finish(task=await self._load(tx, ref.task_id), applied=True)

        return await self._write(finish)

    async def mark_delivered(self, ref: AttemptRef, worker_id: str, now: int) -> bool:
        async def deliver(tx: Tx) -> bool:
            task = await self._held(tx, ref, worker_id)
            if task is None:
                return False
            state = transition(task.state, TaskState.DELIVERED)
            reason = "sent to a legacy worker, which reports no result"
            await tx.run(sql.END, str(state), now, reason, ref.task_id)
            await tx.run(
                sql.END_ATTEMPT, str(state), None, now, None, None, reason, *attempt_key(ref)
            )
            await self._ended(tx, ref.task_id, state, now)
            await self._notice(tx, "task", ref.task_id)
            return True

        return await self._write(deliver)

    async def mark_lost(
        self, worker_id: str, keep: Sequence[AttemptRef], now: int, reason: str
    ) -> list[Task]:
        kept = set(keep)

        async def lose(tx: Tx) -> list[Task]:
            lost: list[Task] = []
            for row in await tx.all(self._select_active() + self.dialect.lock, worker_id):
                task = task_from_row(row)
                if task.ref in kept:
                    continue
                # an attempt that never started and was asked to stop is simply cancelled
                never_started = task.state is TaskState.ASSIGNED and task.cancel_requested
                ended = TaskState.CANCELLED if never_started else TaskState.LOST
                await self._end_attempt(tx, task, ended, Report(Outcome.EXITED, error=reason), now)
                lost.append(await self._load(tx, task.id))
            return lost

        return await self._write(lose)

    async def active_attempts(self, worker_id: str) -> list[Task]:
        async def read(tx: Tx) -> list[Task]:
            return [task_from_row(r) for r in await tx.all(self._select_active(), worker_id)]

        return await self._read(read)


async def _exists(tx: Tx, query: str, *args: Any) -> bool:
    return await tx.one(query, *args) is not None
