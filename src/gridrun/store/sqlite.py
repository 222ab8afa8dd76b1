"""SQLite implementation of `Store`: the shared verbs (`relational`) over one file.

The connection (one thread, group commit, migrations) is `sqlite_db`; the schema `sqlite_sql`.
A verb's steps call SQLite synchronously on that thread: its coroutine never suspends, so it is
run to completion there (`_drive`) inside its own savepoint of the group commit. Steps never
interleave, and nobody is answered before their write is committed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gridrun.store import Notice, sqlite_sql
from gridrun.store import queries as sql
from gridrun.store.relational import RelationalStore
from gridrun.store.relational_tx import Dialect, Row, Tx
from gridrun.store.sqlite_db import SqliteDb, Sync

T = TypeVar("T")


def _drive(step: Awaitable[T]) -> T:
    """Run a coroutine that never really suspends (every await is a synchronous SQLite call)."""
    coro = step if isinstance(step, Coroutine) else None
    assert coro is not None, "a store step is a coroutine"
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("a SQLite store step waited on something other than the database")


class SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.notices: list[str] = []

    async def one(self, query: str, *args: Any) -> Row | None:
        row: Row | None = self._conn.execute(query, args).fetchone()
        return row

    async def all(self, query: str, *args: Any) -> list[Row]:
        return self._conn.execute(query, args).fetchall()

    async def run(self, query: str, *args: Any) -> None:
        self._conn.execute(query, args)

    async def many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(query, rows)

    async def insert_tasks(self, rows: Sequence[Sequence[Any]]) -> list[int]:
        self._conn.executemany(sql.INSERT_TASK, rows)
        self._conn.execute(sqlite_sql.COUNT_INSERTED, (len(rows),))  # they are all queued
        # one writer, AUTOINCREMENT: the batch got consecutive seqs ending at the last
        last: int = self._conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        return list(range(last - len(rows) + 1, last + 1))

    async def notify(self, payload: str) -> None:
        """Heard by this master's own listener once the step commits (one master per file)."""
        self.notices.append(payload)


class SqliteStore(RelationalStore):
    """The embedded default store. `synchronous="full"` fsyncs every commit (survives power
    loss); "normal" survives any process crash, SIGKILL included, and is faster."""

    dialect = Dialect(
        label_clause=("EXISTS (SELECT 1 FROM json_each(labels) WHERE key = ? AND value = ?)"),
        index_hints=True,
        count_by_state="SELECT state, n FROM task_counts WHERE n > 0",  # kept by triggers
        reclaim="PRAGMA incremental_vacuum(4096)",  # pages, per call
        # a large write that failed (a full disk) leaves the log file its size: back to none
        shrink_log="PRAGMA wal_checkpoint(TRUNCATE)",
    )

    def __init__(
        self, path: Path, *, synchronous: Sync = "full", origin: str | None = None
    ) -> None:
        super().__init__(origin or secrets.token_hex(6))
        self._db = SqliteDb(path, synchronous=synchronous)
        self._heard: Callable[[Notice], None] | None = None

    async def read(self, step: Callable[[Tx], Awaitable[T]]) -> T:
        return await self._db.run(lambda conn: _drive(step(SqliteTx(conn))))

    async def write(self, step: Callable[[Tx], Awaitable[T]]) -> T:
        def write(conn: sqlite3.Connection) -> tuple[T, list[str]]:
            tx = SqliteTx(conn)
            with self._db.tx(conn):
                return _drive(step(tx)), tx.notices

        result, notices = await self._db.write(write)
        if self._heard is not None:
            for payload in notices:
                notice = Notice.parse(payload)
                if notice is not None:
                    self._heard(notice)
        return result

    async def open(self) -> None:
        await self._db.open()

    def db_files(self) -> tuple[int | None, float | None]:
        path = self._db.path
        size = 0
        for name in (path, path.with_name(path.name + "-wal")):
            with contextlib.suppress(OSError):
                size += name.stat().st_size
        try:
            disk = os.statvfs(path.parent)
        except OSError:
            return size, None
        total = disk.f_blocks * disk.f_frsize
        free = disk.f_bavail * disk.f_frsize
        return size, (1 - free / total) if total else None

    def disk_free(self) -> int | None:
        try:
            disk = os.statvfs(self._db.path.parent)
        except OSError:
            return None
        return disk.f_bavail * disk.f_frsize

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        await self._db.run(lambda c: c.execute("SELECT 1").fetchone())
        await self._db.check_writable()

    async def listen(self, handler: Callable[[Notice], None]) -> None:
        """One master per file: the only notices are this master's own, after each commit."""
        self._heard = handler

    async def notify(self, notice: Notice) -> None:
        """One master per file: nobody else to notify."""
