"""The SQLite connection of a store: one connection, one thread, and group commit.

Reads run on the connection's thread in turn. Writes queue up and are applied together in one
transaction (each in its own savepoint, so a failing write undoes only itself) while the previous
commit and its fsync are under way; every caller is answered only after the COMMIT. Schema
migrations (`sqlite_sql.MIGRATIONS`) run when the connection opens.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from gridrun.errors import InsufficientStorage, Unavailable
from gridrun.model import TaskState
from gridrun.store import sqlite_backup
from gridrun.store import sqlite_sql as sql

T = TypeVar("T")
Sync = Literal["full", "normal"]
GROUP_COMMIT_MAX = 2000  # writes per transaction
# Below this much free space where the database lives, a store that failed to write stays
# "not ready" even if a probe fits (the next real write would likely fail again).
MIN_FREE_BYTES = 1 << 20


def storage_error(exc: sqlite3.Error, path: Path) -> Unavailable | None:
    """The domain error for a failure of the disk or file under the database (507 when there
    is no room, 503 when it cannot be written or read), or None for any other error."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
    if code == sqlite3.SQLITE_FULL:
        return InsufficientStorage(f"the disk holding {path} is full: {exc}")
    if code == sqlite3.SQLITE_READONLY:
        return Unavailable(f"the database {path} is read-only: {exc}")
    if code in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
        return Unavailable(f"the database {path} cannot be read or written: {exc}")
    return None


def _statements(script: str) -> Iterator[str]:
    """The statements of a script, each whole (a trigger's body has semicolons of its own)."""
    buffer = ""
    for part in script.split(";"):
        buffer += part + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n;"):
                yield buffer
            buffer = ""


class SqliteDb:
    def __init__(self, path: Path, *, synchronous: Sync = "full") -> None:
        self._path = path
        self._synchronous = synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._pending: list[tuple[Callable[[sqlite3.Connection], Any], Any]] = []
        self._flushing = False
        self._held: int | None = None  # the lock on <db>.lock (see sqlite_backup.hold)
        # why the last write failed for want of disk (None once a write commits again)
        self.write_failure: Unavailable | None = None

    @property
    def path(self) -> Path:
        return self._path

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            raise Unavailable("the store is closed")
        conn = self._conn
        assert conn is not None
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, conn)
        except sqlite3.Error as exc:
            raise storage_error(exc, self._path) or exc from None

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
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
        try:
            result: T = await asyncio.wrap_future(future)
        except sqlite3.Error as exc:
            error = storage_error(exc, self._path)
            if error is None:
                raise
            self.write_failure = error
            raise error from None
        self.write_failure = None
        return result

    async def check_writable(self) -> None:
        """Raise the storage error while the database cannot take writes: while the disk under
        it has less than MIN_FREE_BYTES free (a small write may still fit into pages SQLite
        reuses, so one that succeeded proves little), and after a write failed for want of room
        until a probe write commits."""
        stat = os.statvfs(self._path.parent)
        if stat.f_bavail * stat.f_frsize < MIN_FREE_BYTES:
            raise self.write_failure or InsufficientStorage(
                f"the disk holding {self._path} is full: less than 1 MiB free"
            )
        if self.write_failure is None:
            return

        def probe(conn: sqlite3.Connection) -> None:
            with self.tx(conn):
                for statement in sql.PROBE_WRITE:
                    conn.execute(statement)

        await self.write(probe)

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
    def tx(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
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
        if self._held is None:
            self._held = sqlite_backup.hold(self._path)
        try:
            return self._open()
        except BaseException:
            os.close(self._held)
            self._held = None
            raise

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        # space freed by retention goes back to the file system (`reclaim`); it takes only on
        # a new database (an older one reuses freed pages, and never shrinks)
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA foreign_keys = ON")
        with self.tx(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > sql.SCHEMA_VERSION:
                raise Unavailable(
                    f"{self._path} has schema version {version}, newer than this gridrun"
                    f" ({sql.SCHEMA_VERSION}); upgrade gridrun"
                )
            for migration in sql.MIGRATIONS[version:]:
                for statement in _statements(migration):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {sql.SCHEMA_VERSION}")
            conn.executemany(sql.COUNT_STATE, [(str(state),) for state in TaskState])
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
        if self._held is not None:
            os.close(self._held)
            self._held = None
