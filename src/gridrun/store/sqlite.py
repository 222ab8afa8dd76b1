"""SQLite implementation of `Store`: the domain verbs, each one atomic step.

Its SQL lives in `sqlite_sql`, row conversion in `sqlite_rows`, and the connection (one thread,
group commit, migrations) in `sqlite_db`. Steps never interleave, and nobody is answered before
their write is committed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gridrun.errors import TaskNotFound
from gridrun.model import (
    ACTIVE,
    Attempt,
    AttemptRef,
    Outcome,
    Report,
    StreamOutput,
    Task,
    TaskState,
    WorkerInfo,
    WorkerState,
    settle,
    state_after,
    transition,
)
from gridrun.store import Candidate, Finish, NewTask, Page, TaskFilter, TaskOutput
from gridrun.store import sqlite_sql as sql
from gridrun.store.sqlite_db import SqliteDb, Sync
from gridrun.store.sqlite_rows import (
    attempt_from_row,
    attempt_key,
    describe,
    spec_to_json,
    task_from_row,
)

EXPIRE_BATCH = 1000


class SqliteStore:
    """The embedded default store. `synchronous="full"` fsyncs every commit (survives power
    loss); "normal" survives any process crash, SIGKILL included, and is faster."""

    def __init__(self, path: Path, *, synchronous: Sync = "full") -> None:
        self._db = SqliteDb(path, synchronous=synchronous)
        self._run = self._db.run
        self._write = self._db.write
        self._tx = self._db.tx

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    @staticmethod
    def _load(conn: sqlite3.Connection, task_id: str) -> Task:
        row = conn.execute(sql.SELECT_TASK, (task_id,)).fetchone()
        if row is None:
            raise TaskNotFound(f"no task with id {task_id!r}")
        return task_from_row(row)

    @staticmethod
    def _held(conn: sqlite3.Connection, ref: AttemptRef, worker_id: str) -> Task | None:
        """The task, if this worker holds the current attempt named; a report naming any
        other attempt, or a task that does not exist, is stale."""
        row = conn.execute(sql.SELECT_TASK, (ref.task_id,)).fetchone()
        if row is None:
            return None
        task = task_from_row(row)
        return task if task.held_by(ref, worker_id) else None

    # ---- tasks, client side

    async def add_tasks(self, tasks: Sequence[NewTask], now: int) -> list[Task]:
        """Insert the tasks in one transaction. A task whose idempotency key is already taken
        (earlier, or by another task of this batch) is not inserted: the existing task stands in
        its place in the answer, so callers see a different id than they proposed."""
        rows = [
            (
                t.id,
                t.spec.name,
                spec_to_json(t.spec),
                t.spec.priority,
                json.dumps(dict(sorted(t.spec.labels.items()))),
                int(t.spec.legacy_ok),
                now,
                now + round(t.spec.queue_timeout_s * 1000) if t.spec.queue_timeout_s else None,
                t.spec.idempotency_key,
            )
            for t in tasks
        ]
        keyed = any(t.spec.idempotency_key is not None for t in tasks)

        def fresh(t: NewTask, seq: int) -> Task:
            return Task(id=t.id, seq=seq, spec=t.spec, state=TaskState.QUEUED, created_at=now)

        def add(conn: sqlite3.Connection) -> list[Task]:
            with self._tx(conn):
                if not keyed:
                    conn.executemany(sql.INSERT_TASK, rows)
                    # one writer, AUTOINCREMENT: the batch got consecutive seqs ending at the last
                    last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
                    return [fresh(t, last - len(rows) + i + 1) for i, t in enumerate(tasks)]
                added: list[Task] = []
                for t, row in zip(tasks, rows, strict=True):
                    key = t.spec.idempotency_key
                    existing = key and conn.execute(sql.SELECT_TASK_BY_KEY, (key,)).fetchone()
                    if existing:
                        added.append(task_from_row(existing))
                        continue
                    cursor = conn.execute(sql.INSERT_TASK, row)
                    added.append(fresh(t, cursor.lastrowid or 0))
                return added

        return await self._write(add)

    async def get_task(self, task_id: str) -> Task:
        return await self._run(lambda c: self._load(c, task_id))

    async def get_attempts(self, task_id: str) -> list[Attempt]:
        def read(conn: sqlite3.Connection) -> list[Attempt]:
            self._load(conn, task_id)
            return [attempt_from_row(r) for r in conn.execute(sql.SELECT_ATTEMPTS, (task_id,))]

        return await self._run(read)

    async def list_tasks(self, flt: TaskFilter, limit: int, before: int | None) -> Page:
        where: list[str] = []
        args: list[Any] = []
        if flt.states:
            where.append(f"state IN ({', '.join('?' * len(flt.states))})")
            args.extend(str(s) for s in flt.states)
        if flt.worker_id is not None:
            where.append("worker_id = ?")
            args.append(flt.worker_id)
        if flt.name is not None:
            where.append("name = ?")
            args.append(flt.name)
        for key, value in flt.labels.items():
            where.append(
                "EXISTS (SELECT 1 FROM json_each(spec, '$.labels') WHERE key = ? AND value = ?)"
            )
            args.extend((key, value))
        if before is not None:
            where.append("seq < ?")
            args.append(before)
        query = f"SELECT {sql.TASK_COLUMNS} FROM tasks"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY seq DESC LIMIT ?"
        args.append(limit + 1)

        def page(conn: sqlite3.Connection) -> Page:
            tasks = [task_from_row(r) for r in conn.execute(query, args)]
            more = len(tasks) > limit
            tasks = tasks[:limit]
            return Page(tasks=tasks, next_cursor=tasks[-1].seq if more else None)

        return await self._run(page)

    async def get_output(self, task_id: str) -> TaskOutput:
        def read(conn: sqlite3.Connection) -> TaskOutput:
            self._load(conn, task_id)
            streams = {
                stream: StreamOutput(bytes(data), total)
                for stream, data, total in conn.execute(sql.SELECT_OUTPUT, (task_id,))
            }
            return TaskOutput(
                stdout=streams.get(1, StreamOutput()), stderr=streams.get(2, StreamOutput())
            )

        return await self._run(read)

    async def request_cancel(self, task_id: str, now: int) -> Task:
        def cancel(conn: sqlite3.Connection) -> Task:
            with self._tx(conn):
                task = self._load(conn, task_id)
                if task.state in ACTIVE:
                    conn.execute(sql.FLAG_CANCEL, (task_id,))
                else:
                    state = transition(task.state, TaskState.CANCELLED)
                    conn.execute(sql.END, (str(state), now, "cancelled before it started", task_id))
                return self._load(conn, task_id)

        return await self._write(cancel)

    async def count_by_state(self) -> dict[TaskState, int]:
        def count(conn: sqlite3.Connection) -> dict[TaskState, int]:
            return {TaskState(s): n for s, n in conn.execute(sql.COUNT_BY_STATE)}

        return await self._run(count)

    async def expire(self, now: int) -> list[Task]:
        def expire(conn: sqlite3.Connection) -> list[Task]:
            expired: list[Task] = []
            with self._tx(conn):
                for (task_id,) in conn.execute(sql.SELECT_EXPIRED, (now, EXPIRE_BATCH)).fetchall():
                    task = self._load(conn, task_id)
                    state = transition(task.state, TaskState.EXPIRED)
                    limit = task.spec.queue_timeout_s or 0
                    reason = f"not started within its queue timeout of {limit:g}s"
                    conn.execute(sql.END, (str(state), now, reason, task_id))
                    expired.append(self._load(conn, task_id))
            return expired

        return await self._write(expire)

    # ---- scheduling

    async def queued(self, limit: int, after: tuple[int, int] | None, now: int) -> list[Candidate]:
        if after is None:
            query, args = sql.SELECT_QUEUED.format(after=""), (now, limit)
        else:
            priority, seq = after
            query = sql.SELECT_QUEUED.format(after=sql.QUEUED_AFTER)
            args = (now, priority, priority, seq, limit)  # type: ignore[assignment]

        def read(conn: sqlite3.Connection) -> list[Candidate]:
            return [
                Candidate(
                    task_id=r[0],
                    priority=r[1],
                    seq=r[2],
                    selector=json.loads(r[3]),
                    legacy_ok=bool(r[4]),
                )
                for r in conn.execute(query, args)
            ]

        return await self._run(read)

    async def retry_due(self, now: int) -> bool:
        """True if a task waiting out a retry backoff may be claimed now."""
        return await self._run(lambda c: c.execute(sql.SELECT_DUE, (now,)).fetchone() is not None)

    async def claim(self, assignments: Sequence[tuple[str, str]], now: int) -> list[Task]:
        def claim(conn: sqlite3.Connection) -> list[Task]:
            claimed: list[Task] = []
            with self._tx(conn):
                for task_id, worker_id in assignments:
                    task = self._load(conn, task_id)
                    if task.state is not TaskState.QUEUED:
                        continue
                    state = transition(task.state, TaskState.ASSIGNED)
                    conn.execute(sql.CLAIM, (str(state), worker_id, now, task_id))
                    conn.execute(sql.DELETE_OUTPUT, (task_id,))
                    conn.execute(
                        sql.INSERT_ATTEMPT, (task_id, task.attempt + 1, worker_id, str(state), now)
                    )
                    claimed.append(self._load(conn, task_id))
            return claimed

        return await self._write(claim)

    # ---- worker reports

    async def record_start(self, ref: AttemptRef, worker_id: str, started_at: int) -> bool:
        def start(conn: sqlite3.Connection) -> bool:
            with self._tx(conn):
                task = self._held(conn, ref, worker_id)
                if task is None:
                    return False
                if task.state is TaskState.ASSIGNED:
                    state = transition(task.state, TaskState.RUNNING)
                    conn.execute(sql.START, (str(state), started_at, ref.task_id))
                    conn.execute(sql.START_ATTEMPT, (str(state), started_at, *attempt_key(ref)))
                return True

        return await self._write(start)

    async def append_output(
        self,
        ref: AttemptRef,
        worker_id: str,
        chunks: Sequence[tuple[int, int, bytes]],
        cap: int,
    ) -> bool:
        def append(conn: sqlite3.Connection) -> bool:
            with self._tx(conn):
                if self._held(conn, ref, worker_id) is None:
                    return False
                streams = {
                    s: StreamOutput(bytes(d), t)
                    for s, d, t in conn.execute(sql.SELECT_OUTPUT, (ref.task_id,))
                }
                for stream, offset, data in chunks:
                    streams[stream] = streams.get(stream, StreamOutput()).append(offset, data, cap)
                conn.executemany(
                    sql.UPSERT_OUTPUT,
                    [(ref.task_id, s, out.data, out.total) for s, out in streams.items()],
                )
                return True

        return await self._write(append)

    @staticmethod
    def _end_attempt(
        conn: sqlite3.Connection, task: Task, ended: TaskState, report: Report, now: int
    ) -> TaskState:
        """Record how the current attempt ended; move the task on (maybe back to the queue)."""
        ref = task.ref
        finished_at = report.finished_at or now
        error = report.error or None
        conn.execute(
            sql.END_ATTEMPT,
            (str(ended), report.started_at, finished_at, report.exit_code, report.signal, error,
             *attempt_key(ref)),
        )  # fmt: skip
        if ended is TaskState.QUEUED:  # nothing ran (no free slot): back in line, not a try
            conn.execute(sql.REQUEUE, (str(transition(task.state, ended)), 0, error, task.id))
            return TaskState.QUEUED
        tries = conn.execute(sql.COUNT_TRIES, (task.id, task.attempt)).fetchone()[0] + 1
        state, delay = settle(task, ended, report.exit_code, tries)
        if state is TaskState.QUEUED:
            assert delay is not None
            why = describe(ended, report)
            note = f"attempt {task.attempt} {why}; retrying in {delay:g}s"
            conn.execute(sql.REQUEUE, (str(state), now + round(delay * 1000), note, task.id))
        else:
            conn.execute(
                sql.FINISH,
                (str(state), report.started_at, finished_at, report.exit_code, report.signal,
                 error, task.id),
            )  # fmt: skip
        return state

    async def record_finish(
        self, ref: AttemptRef, worker_id: str, report: Report, now: int
    ) -> Finish:
        def finish(conn: sqlite3.Connection) -> Finish:
            with self._tx(conn):
                task = self._held(conn, ref, worker_id)
                if task is None:
                    return Finish(task=None, applied=False)
                ended = state_after(report)
                if ended is TaskState.QUEUED and task.cancel_requested:
                    ended = TaskState.CANCELLED
                self._end_attempt(conn, task, ended, report, now)
                return Finish(task=self._load(conn, ref.task_id), applied=True)

        return await self._write(finish)

    async def mark_delivered(self, ref: AttemptRef, worker_id: str, now: int) -> bool:
        def deliver(conn: sqlite3.Connection) -> bool:
            with self._tx(conn):
                task = self._held(conn, ref, worker_id)
                if task is None:
                    return False
                state = transition(task.state, TaskState.DELIVERED)
                reason = "sent to a legacy worker, which reports no result"
                conn.execute(sql.END, (str(state), now, reason, ref.task_id))
                conn.execute(
                    sql.END_ATTEMPT, (str(state), None, now, None, None, reason, *attempt_key(ref))
                )
                return True

        return await self._write(deliver)

    async def mark_lost(
        self, worker_id: str, keep: Sequence[AttemptRef], now: int, reason: str
    ) -> list[Task]:
        kept = set(keep)

        def lose(conn: sqlite3.Connection) -> list[Task]:
            lost: list[Task] = []
            with self._tx(conn):
                for row in conn.execute(sql.SELECT_ACTIVE, (worker_id,)).fetchall():
                    task = task_from_row(row)
                    if task.ref in kept:
                        continue
                    # an attempt that never started and was asked to stop is simply cancelled
                    never_started = task.state is TaskState.ASSIGNED and task.cancel_requested
                    ended = TaskState.CANCELLED if never_started else TaskState.LOST
                    self._end_attempt(conn, task, ended, Report(Outcome.EXITED, error=reason), now)
                    lost.append(self._load(conn, task.id))
            return lost

        return await self._write(lose)

    async def active_attempts(self, worker_id: str) -> list[Task]:
        return await self._run(
            lambda c: [task_from_row(r) for r in c.execute(sql.SELECT_ACTIVE, (worker_id,))]
        )

    async def workers_with_active_tasks(self) -> set[str]:
        return await self._run(lambda c: {r[0] for r in c.execute(sql.SELECT_ACTIVE_WORKERS)})

    # ---- workers

    async def upsert_worker(self, worker: WorkerInfo) -> None:
        row = (
            worker.id,
            worker.hostname,
            json.dumps(dict(worker.labels)),
            worker.slots,
            str(worker.state),
            worker.version,
            int(worker.legacy),
            worker.connected_at,
            worker.last_seen,
            json.dumps(dict(worker.resources)),
        )

        def upsert(conn: sqlite3.Connection) -> None:
            with self._tx(conn):
                conn.execute(sql.UPSERT_WORKER, row)

        await self._write(upsert)

    async def list_workers(self) -> list[WorkerInfo]:
        def read(conn: sqlite3.Connection) -> list[WorkerInfo]:
            return [
                WorkerInfo(
                    id=r[0],
                    hostname=r[1],
                    labels=json.loads(r[2]),
                    slots=r[3],
                    state=WorkerState(r[4]),
                    version=r[5],
                    legacy=bool(r[6]),
                    connected_at=r[7],
                    last_seen=r[8],
                    running=r[9],
                    resources=json.loads(r[10]),
                )
                for r in conn.execute(sql.SELECT_WORKERS)
            ]

        return await self._run(read)
