"""The domain verbs of the SQL stores, written once over a small transaction interface (`Tx`).

`SqliteStore` and `PostgresStore` differ only in how a step reaches its database (a thread and
group commit, or a connection pool), in their DDL, and in a `Dialect`: the row locks PostgreSQL
needs because several masters write at once (`FOR UPDATE`, `SKIP LOCKED` for claims). Each verb
runs as one transaction given by the backend; its notices (`Tx.notify`) reach other masters
only if it commits.

A store is its backend (`read`, `write`: the `Db` the verbs use) and ten groups of verbs,
each an object of its own module over that backend: `tasks`, `jobs`, `dispatch`, `attempts`,
`schedules`, `workers`, `retention`, `allocations`, `files`. The steps several groups take
(loading a task, inserting tasks with their dependencies, notices) are one shared
`TaskSteps`. A verb reads in its group's module, the steps it takes there, and its SQL
(`queries`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gridrun.store.allocations import AllocationVerbs
from gridrun.store.attempts import AttemptVerbs
from gridrun.store.dispatch import DispatchVerbs
from gridrun.store.files import FileVerbs
from gridrun.store.jobs import JobVerbs
from gridrun.store.relational_tx import Dialect, Tx
from gridrun.store.retention import RetentionVerbs
from gridrun.store.schedules import ScheduleVerbs
from gridrun.store.task_steps import TaskSteps
from gridrun.store.tasks import TaskVerbs
from gridrun.store.workers import WorkerVerbs

T = TypeVar("T")


class RelationalStore(ABC):
    """`Store` over any backend providing `read` and `write` of one step."""

    dialect = Dialect()
    shared = False  # True where several masters may use one database at once

    def __init__(self, origin: str) -> None:
        self.origin = origin  # this master, in notices and worker leases
        steps = TaskSteps(self)
        self.tasks = TaskVerbs(self, steps)
        self.jobs = JobVerbs(self, steps)
        self.dispatch = DispatchVerbs(self, steps)
        self.attempts = AttemptVerbs(self, steps)
        self.schedules = ScheduleVerbs(self, steps)
        self.workers = WorkerVerbs(self)
        self.retention = RetentionVerbs(self, steps)
        self.allocations = AllocationVerbs(self)
        self.files = FileVerbs(self)

    @abstractmethod
    async def read(self, step: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `step` on a connection, outside any write transaction."""

    @abstractmethod
    async def write(self, step: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `step` as one transaction, committed when it returns."""

    def db_files(self) -> tuple[int | None, float | None]:
        """A file database's size and its disk's use (none here: see SqliteStore)."""
        return None, None

    def disk_free(self) -> int | None:
        """Bytes free on the disk that holds the database, where the master can see it (a
        file database); None: unknown (a server's)."""
        return None

    async def fold_counts(self) -> None:  # noqa: B027 (a backend may override it)
        """Nothing to fold where the counts are kept in place (SQLite)."""
