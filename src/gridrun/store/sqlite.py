"""SQLite implementation of `Store`: one file, WAL, one connection owned by one thread.

All SQL of this backend lives in this module. Each public method runs as one transaction on the
store's own thread, so transactions never interleave and read-modify-write steps are atomic.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from gridrun.errors import TaskNotFound, Unavailable
from gridrun.model import (
    ACTIVE,
    AttemptRef,
    Report,
    StreamOutput,
    Task,
    TaskSpec,
    TaskState,
    WorkerInfo,
    WorkerState,
    state_after,
    transition,
)
from gridrun.store import Candidate, Finish, NewTask, Page, TaskFilter, TaskOutput

T = TypeVar("T")
Sync = Literal["full", "normal"]

SCHEMA_VERSION = 1
GROUP_COMMIT_MAX = 2000  # writes per transaction

SCHEMA = """
CREATE TABLE tasks (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    name             TEXT,
    spec             TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    selector         TEXT NOT NULL,
    legacy_ok        INTEGER NOT NULL,
    state            TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    worker_id        TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    assigned_at      INTEGER,
    started_at       INTEGER,
    finished_at      INTEGER,
    exit_code        INTEGER,
    signal           INTEGER,
    error            TEXT
);
CREATE INDEX tasks_queue ON tasks (priority DESC, seq) WHERE state = 'queued';
CREATE INDEX tasks_active ON tasks (worker_id) WHERE state IN ('assigned', 'running');
CREATE INDEX tasks_by_state ON tasks (state, seq);
CREATE INDEX tasks_by_worker ON tasks (worker_id, seq);
CREATE INDEX tasks_by_name ON tasks (name, seq);

CREATE TABLE output (
    task_id TEXT NOT NULL,
    stream  INTEGER NOT NULL,
    data    BLOB NOT NULL,
    total   INTEGER NOT NULL,
    PRIMARY KEY (task_id, stream)
) WITHOUT ROWID;

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    hostname     TEXT NOT NULL,
    labels       TEXT NOT NULL,
    slots        INTEGER NOT NULL,
    state        TEXT NOT NULL,
    version      TEXT NOT NULL,
    legacy       INTEGER NOT NULL,
    connected_at INTEGER,
    last_seen    INTEGER
);
"""

TASK_COLUMNS = (
    "seq, id, spec, state, attempt, worker_id, cancel_requested, created_at, assigned_at,"
    " started_at, finished_at, exit_code, signal, error"
)
SELECT_TASK = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"
INSERT_TASK = (
    "INSERT INTO tasks (id, name, spec, priority, selector, legacy_ok, state, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, 'queued', ?)"
)
SELECT_QUEUED = (
    "SELECT id, priority, seq, selector, legacy_ok FROM tasks WHERE state = 'queued'"
    " {after} ORDER BY priority DESC, seq LIMIT ?"
)
QUEUED_AFTER = "AND (priority < ? OR (priority = ? AND seq > ?))"
CLAIM = (
    "UPDATE tasks SET state = ?, attempt = attempt + 1, worker_id = ?, assigned_at = ?,"
    " started_at = NULL, finished_at = NULL, exit_code = NULL, signal = NULL, error = NULL"
    " WHERE id = ?"
)
START = "UPDATE tasks SET state = ?, started_at = ? WHERE id = ?"
FINISH = (
    "UPDATE tasks SET state = ?, started_at = coalesce(?, started_at), finished_at = ?,"
    " exit_code = ?, signal = ?, error = ? WHERE id = ?"
)
REQUEUE = "UPDATE tasks SET state = ?, worker_id = NULL, assigned_at = NULL WHERE id = ?"
END = "UPDATE tasks SET state = ?, finished_at = ?, error = ? WHERE id = ?"
FLAG_CANCEL = "UPDATE tasks SET cancel_requested = 1 WHERE id = ?"
SELECT_ACTIVE = (
    f"SELECT {TASK_COLUMNS} FROM tasks"
    " WHERE worker_id = ? AND state IN ('assigned', 'running') ORDER BY seq"
)
SELECT_ACTIVE_WORKERS = (
    "SELECT DISTINCT worker_id FROM tasks WHERE state IN ('assigned', 'running')"
)
SELECT_OUTPUT = "SELECT stream, data, total FROM output WHERE task_id = ?"
UPSERT_OUTPUT = (
    "INSERT INTO output (task_id, stream, data, total) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (task_id, stream) DO UPDATE SET data = excluded.data, total = excluded.total"
)
DELETE_OUTPUT = "DELETE FROM output WHERE task_id = ?"
UPSERT_WORKER = (
    "INSERT INTO workers (id, hostname, labels, slots, state, version, legacy, connected_at,"
    " last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, labels = excluded.labels,"
    " slots = excluded.slots, state = excluded.state, version = excluded.version,"
    " legacy = excluded.legacy, connected_at = excluded.connected_at,"
    " last_seen = excluded.last_seen"
)
SELECT_WORKERS = (
    "SELECT w.id, w.hostname, w.labels, w.slots, w.state, w.version, w.legacy, w.connected_at,"
    " w.last_seen, (SELECT count(*) FROM tasks t WHERE t.worker_id = w.id"
    " AND t.state IN ('assigned', 'running')) FROM workers w ORDER BY w.id"
)
COUNT_BY_STATE = "SELECT state, count(*) FROM tasks GROUP BY state"


def spec_to_json(spec: TaskSpec) -> str:
    return json.dumps(
        {
            "argv": list(spec.argv),
            "cmd": spec.cmd,
            "shell": spec.shell,
            "env": dict(spec.env),
            "cwd": spec.cwd,
            "timeout_s": spec.timeout_s,
            "priority": spec.priority,
            "labels": dict(spec.labels),
            "name": spec.name,
        },
        separators=(",", ":"),
    )


def spec_from_json(text: str) -> TaskSpec:
    raw = json.loads(text)
    return TaskSpec(
        argv=tuple(raw["argv"]),
        cmd=raw["cmd"],
        shell=raw["shell"],
        env=raw["env"],
        cwd=raw["cwd"],
        timeout_s=raw["timeout_s"],
        priority=raw["priority"],
        labels=raw["labels"],
        name=raw["name"],
    )


def _task(row: sqlite3.Row | tuple[Any, ...]) -> Task:
    return Task(
        seq=row[0],
        id=row[1],
        spec=spec_from_json(row[2]),
        state=TaskState(row[3]),
        attempt=row[4],
        worker_id=row[5],
        cancel_requested=bool(row[6]),
        created_at=row[7],
        assigned_at=row[8],
        started_at=row[9],
        finished_at=row[10],
        exit_code=row[11],
        signal=row[12],
        error=row[13],
    )


class SqliteStore:
    """The embedded default store. `synchronous="full"` fsyncs every commit (survives power
    loss); "normal" survives any process crash, SIGKILL included, and is faster."""

    def __init__(self, path: Path, *, synchronous: Sync = "full") -> None:
        self._path = path
        self._synchronous = synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._pending: list[tuple[Callable[[sqlite3.Connection], Any], Any]] = []
        self._flushing = False

    # ---- plumbing

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            raise Unavailable("the store is closed")
        conn = self._conn
        assert conn is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, conn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a write in the next group commit; return once that transaction is committed.

        Writes that arrive while a commit (and its fsync) is in progress are applied together
        in the next transaction, each in its own savepoint, so one failing write does not undo
        the others, and nobody is answered before their write is durable.
        """
        if self._executor is None:
            raise Unavailable("the store is closed")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            self._pending.append((fn, future))
            start = not self._flushing
            self._flushing = True
        if start:
            self._executor.submit(self._flush_writes)
        result: T = await asyncio.wrap_future(future)
        return result

    def _flush_writes(self) -> None:
        try:
            self._flush_batches()
        finally:
            with self._lock:
                # whatever happened, the next write must be able to start a flush again
                restart = bool(self._pending)
                self._flushing = restart
            if restart and self._executor is not None:
                self._executor.submit(self._flush_writes)

    def _flush_batches(self) -> None:
        conn = self._conn
        assert conn is not None
        while True:
            with self._lock:
                batch = self._pending[:GROUP_COMMIT_MAX]
                del self._pending[:GROUP_COMMIT_MAX]
                if not batch:
                    return
            outcomes: list[tuple[concurrent.futures.Future[Any], Any, BaseException | None]] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                for fn, future in batch:
                    try:
                        outcomes.append((future, fn(conn), None))
                    except (
                        Exception
                    ) as exc:  # handed to the caller below, with its savepoint undone
                        outcomes.append((future, None, exc))
                conn.execute("COMMIT")
            except Exception as exc:  # the transaction itself failed: nothing in it is durable
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                outcomes = [(future, None, exc) for _, future in batch]
            for future, value, error in outcomes:
                # A caller cancelled while waiting (e.g. its stream died) still had its write
                # applied; only the answer has nobody to go to.
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    if error is not None:
                        future.set_exception(error)
                    else:
                        future.set_result(value)

    @staticmethod
    @contextmanager
    def _tx(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """One atomic step: a savepoint inside a group commit, else its own transaction."""
        if conn.in_transaction:
            conn.execute("SAVEPOINT step")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK TO step")
                conn.execute("RELEASE step")
                raise
            conn.execute("RELEASE step")
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA foreign_keys = ON")
        with self._tx(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise Unavailable(
                    f"{self._path} has schema version {version}, newer than this gridrun"
                    f" ({SCHEMA_VERSION}); upgrade gridrun"
                )
            if version < 1:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return conn

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridrun-sqlite")
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, self._connect)

    async def close(self) -> None:
        if self._executor is None:
            return
        conn, executor = self._conn, self._executor
        self._executor = None
        self._conn = None
        loop = asyncio.get_running_loop()
        if conn is not None:
            await loop.run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    @staticmethod
    def _load(conn: sqlite3.Connection, task_id: str) -> Task:
        row = conn.execute(SELECT_TASK, (task_id,)).fetchone()
        if row is None:
            raise TaskNotFound(f"no task with id {task_id!r}")
        return _task(row)

    # ---- tasks, client side

    async def add_tasks(self, tasks: Sequence[NewTask], now: int) -> list[Task]:
        rows = [
            (
                t.id,
                t.spec.name,
                spec_to_json(t.spec),
                t.spec.priority,
                json.dumps(dict(sorted(t.spec.labels.items()))),
                int(t.spec.legacy_ok),
                now,
            )
            for t in tasks
        ]

        def add(conn: sqlite3.Connection) -> list[Task]:
            with self._tx(conn):
                conn.executemany(INSERT_TASK, rows)
                # one writer, AUTOINCREMENT: the batch got consecutive seqs ending at the last one
                first = conn.execute("SELECT last_insert_rowid()").fetchone()[0] - len(rows)
            return [
                Task(
                    id=t.id, seq=first + i + 1, spec=t.spec, state=TaskState.QUEUED, created_at=now
                )
                for i, t in enumerate(tasks)
            ]

        return await self._write(add)

    async def get_task(self, task_id: str) -> Task:
        return await self._run(lambda c: self._load(c, task_id))

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
        if before is not None:
            where.append("seq < ?")
            args.append(before)
        sql = f"SELECT {TASK_COLUMNS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit + 1)

        def page(conn: sqlite3.Connection) -> Page:
            tasks = [_task(r) for r in conn.execute(sql, args)]
            more = len(tasks) > limit
            tasks = tasks[:limit]
            return Page(tasks=tasks, next_cursor=tasks[-1].seq if more else None)

        return await self._run(page)

    async def get_output(self, task_id: str) -> TaskOutput:
        def read(conn: sqlite3.Connection) -> TaskOutput:
            self._load(conn, task_id)
            streams = {
                stream: StreamOutput(bytes(data), total)
                for stream, data, total in conn.execute(SELECT_OUTPUT, (task_id,))
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
                    conn.execute(FLAG_CANCEL, (task_id,))
                else:
                    state = transition(task.state, TaskState.CANCELLED)
                    conn.execute(END, (str(state), now, "cancelled before it started", task_id))
                return self._load(conn, task_id)

        return await self._write(cancel)

    async def count_by_state(self) -> dict[TaskState, int]:
        def count(conn: sqlite3.Connection) -> dict[TaskState, int]:
            return {TaskState(s): n for s, n in conn.execute(COUNT_BY_STATE)}

        return await self._run(count)

    # ---- scheduling

    async def queued(self, limit: int, after: tuple[int, int] | None) -> list[Candidate]:
        if after is None:
            sql, args = SELECT_QUEUED.format(after=""), (limit,)
        else:
            priority, seq = after
            sql = SELECT_QUEUED.format(after=QUEUED_AFTER)
            args = (priority, priority, seq, limit)  # type: ignore[assignment]

        def read(conn: sqlite3.Connection) -> list[Candidate]:
            return [
                Candidate(
                    task_id=r[0],
                    priority=r[1],
                    seq=r[2],
                    selector=json.loads(r[3]),
                    legacy_ok=bool(r[4]),
                )
                for r in conn.execute(sql, args)
            ]

        return await self._run(read)

    async def claim(self, assignments: Sequence[tuple[str, str]], now: int) -> list[Task]:
        def claim(conn: sqlite3.Connection) -> list[Task]:
            claimed: list[Task] = []
            with self._tx(conn):
                for task_id, worker_id in assignments:
                    task = self._load(conn, task_id)
                    if task.state is not TaskState.QUEUED:
                        continue
                    state = transition(task.state, TaskState.ASSIGNED)
                    conn.execute(CLAIM, (str(state), worker_id, now, task_id))
                    conn.execute(DELETE_OUTPUT, (task_id,))
                    claimed.append(self._load(conn, task_id))
            return claimed

        return await self._write(claim)

    # ---- worker reports

    async def record_start(self, ref: AttemptRef, worker_id: str, started_at: int) -> bool:
        def start(conn: sqlite3.Connection) -> bool:
            with self._tx(conn):
                task = self._load(conn, ref.task_id)
                if not task.held_by(ref, worker_id):
                    return False
                if task.state is TaskState.ASSIGNED:
                    state = transition(task.state, TaskState.RUNNING)
                    conn.execute(START, (str(state), started_at, ref.task_id))
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
                if not self._load(conn, ref.task_id).held_by(ref, worker_id):
                    return False
                streams = {
                    s: StreamOutput(bytes(d), t)
                    for s, d, t in conn.execute(SELECT_OUTPUT, (ref.task_id,))
                }
                for stream, offset, data in chunks:
                    streams[stream] = streams.get(stream, StreamOutput()).append(offset, data, cap)
                conn.executemany(
                    UPSERT_OUTPUT,
                    [(ref.task_id, s, out.data, out.total) for s, out in streams.items()],
                )
                return True

        return await self._write(append)

    async def record_finish(
        self, ref: AttemptRef, worker_id: str, report: Report, now: int
    ) -> Finish:
        def finish(conn: sqlite3.Connection) -> Finish:
            with self._tx(conn):
                task = self._load(conn, ref.task_id)
                if not task.held_by(ref, worker_id):
                    return Finish(task=task, applied=False)
                target = state_after(report)
                if target is TaskState.QUEUED and task.cancel_requested:
                    target = TaskState.CANCELLED
                state = transition(task.state, target)
                if state is TaskState.QUEUED:
                    conn.execute(REQUEUE, (str(state), ref.task_id))
                else:
                    conn.execute(
                        FINISH,
                        (
                            str(state),
                            report.started_at,
                            report.finished_at or now,
                            report.exit_code,
                            report.signal,
                            report.error or None,
                            ref.task_id,
                        ),
                    )
                return Finish(task=self._load(conn, ref.task_id), applied=True)

        return await self._write(finish)

    async def mark_delivered(self, ref: AttemptRef, worker_id: str, now: int) -> bool:
        def deliver(conn: sqlite3.Connection) -> bool:
            with self._tx(conn):
                task = self._load(conn, ref.task_id)
                if not task.held_by(ref, worker_id):
                    return False
                state = transition(task.state, TaskState.DELIVERED)
                conn.execute(
                    END,
                    (
                        str(state),
                        now,
                        "sent to a legacy worker, which reports no result",
                        ref.task_id,
                    ),
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
                for row in conn.execute(SELECT_ACTIVE, (worker_id,)).fetchall():
                    task = _task(row)
                    if task.ref in kept:
                        continue
                    if task.state is TaskState.ASSIGNED and task.cancel_requested:
                        # it never started and the user asked to cancel it: that is the truth
                        state = transition(task.state, TaskState.CANCELLED)
                    else:
                        state = transition(task.state, TaskState.LOST)
                    conn.execute(END, (str(state), now, reason, task.id))
                    lost.append(self._load(conn, task.id))
            return lost

        return await self._write(lose)

    async def active_attempts(self, worker_id: str) -> list[Task]:
        return await self._run(lambda c: [_task(r) for r in c.execute(SELECT_ACTIVE, (worker_id,))])

    async def workers_with_active_tasks(self) -> set[str]:
        return await self._run(lambda c: {r[0] for r in c.execute(SELECT_ACTIVE_WORKERS)})

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
        )

        def upsert(conn: sqlite3.Connection) -> None:
            with self._tx(conn):
                conn.execute(UPSERT_WORKER, row)

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
                )
                for r in conn.execute(SELECT_WORKERS)
            ]

        return await self._run(read)
