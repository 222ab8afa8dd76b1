"""The small transaction interface the SQL stores' verbs are written over, and the dialect
differences between the backends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

Row = Sequence[Any]
T = TypeVar("T")


class Tx(Protocol):
    """One transaction (or, for reads, one connection) of a backend."""

    async def one(self, query: str, *args: Any) -> Row | None: ...

    async def all(self, query: str, *args: Any) -> list[Row]: ...

    async def run(self, query: str, *args: Any) -> None: ...

    async def many(self, query: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def insert_tasks(self, rows: Sequence[Sequence[Any]]) -> list[int]:
        """Insert task rows (`queries.INSERT_TASK`); return their seqs in order."""
        ...

    async def notify(self, payload: str) -> None:
        """Tell the other masters on this database, when (and only if) the step commits."""
        ...


@dataclass(frozen=True, slots=True)
class Dialect:
    lock: str = ""  # appended to a read whose row the step then changes
    skip_locked: str = ""  # ... where another master's step may hold it: skip, do not wait
    share_lock: str = ""  # ... where the row must not change until the step commits
    label_clause: str = ""  # one `key = value` label filter on a task's labels
    # name the partial index a read of the queue must use: SQLite's planner otherwise
    # prefers (state, seq), and reads (and sorts) every queued task
    index_hints: bool = False
    count_by_state: str = "SELECT state, count(*) FROM tasks GROUP BY state"
    # taken by a step that claims tasks with a concurrency key, held until it commits: one
    # such step at a time across masters (SQLite's one writer needs nothing)
    claim_lock: str = ""
    # a dispatch pass's claim as one statement (see postgres_sql.CLAIM_BATCH); "": the
    # claim's statements one by one
    claim_batch: str = ""

    def use_index(self, name: str) -> str:
        return f"INDEXED BY {name}" if self.index_hints else ""

    async def serialize_claims(self, tx: Tx) -> None:
        if self.claim_lock:
            await tx.run(self.claim_lock)

    # taken (try, not wait) by a retention step: one master deletes at a time
    gc_lock: str = ""
    reclaim: str = ""  # gives freed pages back to the file system
    shrink_log: str = ""  # ... and what the write-ahead log took (outside a transaction)
    db_size: str = ""  # the database's size in bytes, where the server knows it

    async def take_gc_lock(self, tx: Tx) -> bool:
        if not self.gc_lock:
            return True
        row = await tx.one(self.gc_lock)
        return bool(row is not None and row[0])


TASKS_BY_ID = "sqlite_autoindex_tasks_1"  # SQLite's name for the index of tasks.id (UNIQUE)


def marks(n: int) -> str:
    return ", ".join("?" * n)


class Db(Protocol):
    """What the verbs need of a backend: run a step on a connection (`read`), or as one
    transaction that is committed when it returns (`write`); its dialect; the master using
    it (named in notices and leases); and, for a file database, its size and disk."""

    origin: str
    dialect: Dialect

    async def read(self, step: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `step` on a connection, outside any write transaction."""
        ...

    async def write(self, step: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `step` as one transaction, committed when it returns."""
        ...

    def disk_free(self) -> int | None: ...

    def db_files(self) -> tuple[int | None, float | None]:
        """A file database's size and its disk's use (None, None for a server's)."""
        ...
