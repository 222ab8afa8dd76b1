"""The durable record of tasks and workers: a small `Store` protocol speaking domain verbs.

Every method is one transaction: when it returns, what it changed is committed. Backends:
`gridrun.store.sqlite` (the default, one file, one master) and `gridrun.store.postgres` (several
masters on one database). Both share their verbs (`gridrun.store.relational`) and decide state
changes only through `gridrun.model` (transition table, fencing, report -> state).

Several masters on one database learn of each other's changes by `Notice`s (PostgreSQL
LISTEN/NOTIFY), and judge each other's workers by leases kept in the workers table.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from gridrun.allocating import Allocation, AllocQueue
from gridrun.dispatching import Candidate, Lane, Planner, Quota
from gridrun.model import (
    Attempt,
    AttemptRef,
    Report,
    Schedule,
    Stream,
    Task,
    TaskState,
    WorkerInfo,
    WorkerState,
)
from gridrun.output import Mark
from gridrun.store.file_store import FileStore
from gridrun.store.values import (
    NOTICE_KINDS,
    Applied,
    Finished,
    Firing,
    JobSummary,
    LaneRead,
    NewTask,
    Notice,
    NoticeKind,
    Output,
    Own,
    Page,
    Pass,
    Started,
    Storage,
    TaskFilter,
    TaskOrder,
    TaskOutput,
    WorkerReport,
)

__all__ = [
    "NOTICE_KINDS",
    "Applied",
    "AttemptStore",
    "DispatchStore",
    "Finished",
    "Firing",
    "JobStore",
    "JobSummary",
    "LaneRead",
    "NewTask",
    "Notice",
    "NoticeKind",
    "Output",
    "Own",
    "Page",
    "Pass",
    "RetentionStore",
    "ScheduleStore",
    "Started",
    "Storage",
    "Store",
    "TaskFilter",
    "TaskOrder",
    "TaskOutput",
    "TaskStore",
    "WorkerReport",
    "WorkerStore",
]


class TaskStore(Protocol):
    """The tasks as clients see them: submit, read, list, cancel, expire."""

    async def add_tasks(self, tasks: Sequence[NewTask], now: int) -> list[Task]: ...

    async def resolve_id(self, given: str) -> str:
        """The whole id a unique prefix or tail (6 digits or more) names; `given` itself when
        none matches; AmbiguousId when several do."""
        ...

    async def get_task(self, task_id: str) -> Task: ...

    async def get_attempts(self, task_id: str) -> list[Attempt]: ...

    async def list_tasks(
        self, flt: TaskFilter, limit: int, before: int | None, order: TaskOrder = "created"
    ) -> Page:
        """A page of the tasks that match, newest first (`before`: a cursor), or by `order`
        the top `limit` (no cursor: next_cursor is None)."""
        ...

    async def get_output(self, task_id: str) -> TaskOutput: ...

    async def request_cancel(self, task_id: str, now: int) -> Task:
        """Queued: cancelled now. Active: flagged for the worker. Terminal: InvalidTransition."""
        ...

    async def count_by_state(self) -> dict[TaskState, int]: ...

    async def expire(self, now: int) -> list[Task]:
        """End as expired the queued tasks past their queue timeout."""
        ...


class JobStore(Protocol):
    """Jobs (arrays, --file batches, broadcasts) as a whole, and cancelling by filter."""

    async def resolve_id(self, given: str) -> str:
        """As TaskStore.resolve_id, of jobs."""
        ...

    async def summary(self, job_id: str, unsuccessful: int = 1000) -> JobSummary:
        """Counts per state, its first task, the first `unsuccessful` ended tasks that did
        not succeed (by index). JobNotFound if it has no task."""
        ...

    async def list_jobs(self, limit: int, owner: str | None = None) -> list[JobSummary]: ...

    async def cells(self, job_id: str, limit: int) -> list[tuple[str, int | None, TaskState]]:
        """(id, index, state) of its first `limit` tasks by index."""
        ...

    async def cancel(self, flt: TaskFilter, now: int) -> list[Task]:
        """Cancel each task that matches and has not ended (active ones: flagged for their
        workers); the tasks as they were."""
        ...

    async def rerun(
        self, job_id: str, states: Collection[TaskState], now: int
    ) -> tuple[JobSummary, list[Task]]:
        """Queue again the job's ended tasks in these states, for a new attempt each."""
        ...


class DispatchStore(Protocol):
    """What dispatch reads and claims, and the limits it honours (quotas, concurrency keys)."""

    async def queued(self, limit: int, after: tuple[int, int] | None, now: int) -> list[Candidate]:
        """Claimable queued tasks (past any retry backoff), highest priority first, then
        oldest; resume after (priority, seq)."""
        ...

    async def queued_lanes(self, after: str, limit: int) -> list[Lane]:
        """The lanes of the queued tasks, in key order, after the key `after` ("": from the
        first); at most `limit`. Costs a seek per lane, whatever the queue's length."""
        ...

    async def plan_and_claim(
        self,
        lanes: Sequence[Lane] | LaneRead,
        per_lane: int,
        now: int,
        plan: Planner,
        announcing: Collection[str] = (),
    ) -> Pass:
        """In one transaction: list the lanes (a `LaneRead`; or take those given), read the
        first `per_lane` claimable tasks of each lane looked into (highest priority, then
        oldest), what runs across the grid and the quotas; claim what `plan` picks. Claims
        of tasks with a concurrency key are serialized across masters, so a limit holds
        however many dispatch at once. Attempts claimed for the workers in `announcing` are
        recorded as such (see mark_lost)."""
        ...

    async def lane_heads(self, lanes: Sequence[Lane], now: int, per_lane: int) -> list[Candidate]:
        """The first `per_lane` claimable tasks of each lane (a read: nothing is claimed)."""
        ...

    async def quotas(self) -> list[Quota]: ...

    async def set_quota(self, quota: Quota) -> None:
        """Create or replace the quota of (scope, name); one with no limit is removed."""
        ...

    async def concurrency_keys(self, limit: int) -> list[tuple[str, str, int]]:
        """(scope, key, limit) of the concurrency keys declared: scope "" for a grid-wide
        key, else the owner whose key it is."""
        ...

    async def set_grid_key(self, key: str, limit: int | None) -> None:
        """Declare (or change, or with None remove) a grid-wide concurrency key: from now
        on every owner's tasks naming it share it, with this limit."""
        ...

    async def owners(self) -> list[tuple[str, str, int, int, int]]:
        """(owner, queue, queued, running) for each owner and queue with tasks queued or
        running (reads every queued task's index entry: for a look, not for each second)."""
        ...

    async def queued_count(self, scope: str, name: str, limit: int) -> int:
        """How many tasks of this owner or queue are queued, counting up to `limit`."""
        ...

    async def mark_unschedulable(self, reasons: Sequence[tuple[str, str | None]]) -> None:
        """Record (task_id, why no live worker could ever take it, or None) for queued tasks."""
        ...

    async def retry_due(self, now: int) -> bool:
        """True if a task waiting out a retry backoff may be claimed now."""
        ...


class AttemptStore(Protocol):
    """What workers report of the attempts they hold (fenced by attempt and worker)."""

    async def record_start(self, ref: AttemptRef, worker_id: str, started_at: int) -> bool: ...

    async def append_output(
        self,
        ref: AttemptRef,
        worker_id: str,
        chunks: Sequence[tuple[Stream, int, bytes]],
        cap: int,
        marks: Sequence[Mark] = (),
    ) -> bool:
        """Append (stream, offset, data) chunks, stream 1 = stdout and 2 = stderr, and the
        `marks` of the runs they begin (the order across streams: gridrun.output)."""
        ...

    async def record_finish(
        self, ref: AttemptRef, worker_id: str, report: Report, now: int
    ) -> Applied: ...

    async def record_reports(
        self, worker_id: str, reports: Sequence[WorkerReport], cap: int, now: int
    ) -> list[Applied]:
        """Apply a worker's reports in order, in one transaction (as record_start,
        append_output and record_finish would, one by one); for each, the task after it
        (None for a Started or Output) and whether it applied (False: stale)."""
        ...

    async def mark_delivered(self, ref: AttemptRef, worker_id: str, now: int) -> bool: ...

    async def mark_lost(
        self, worker_id: str, keep: Sequence[AttemptRef], now: int, reason: str
    ) -> list[Task]:
        """End every active attempt held by `worker_id` except `keep` as lost; or, one that
        was sent to a worker that announces its starts and never started, put it back in the
        queue (not a try). Returns the tasks so changed."""
        ...

    async def active_attempts(self, worker_id: str) -> list[Task]: ...


class ScheduleStore(Protocol):
    """Schedules and the tasks their slots make."""

    async def add_schedule(self, schedule: Schedule) -> Schedule: ...

    async def list_schedules(self) -> list[Schedule]: ...

    async def get_schedule(self, schedule_id: str) -> Schedule: ...

    async def delete_schedule(self, schedule_id: str) -> Schedule: ...

    async def due_schedules(self, now: int) -> list[Schedule]: ...

    async def fire_schedule(
        self, schedule_id: str, slot: int, task: NewTask, next_at: int, now: int
    ) -> Task | None: ...

    async def fire_schedules(self, firings: Sequence[Firing], now: int) -> list[Task | None]:
        """Fire many schedules' slots in one transaction; None for each already fired."""
        ...


class WorkerStore(Protocol):
    """Workers, their secrets and the leases masters hold on them."""

    async def upsert_worker(self, worker: WorkerInfo, lease_until: int | None) -> None:
        """Record a worker as this master sees it. `online` takes the worker's lease for this
        master; other states are recorded only by the master holding the lease."""
        ...

    async def renew_leases(self, seen: Sequence[tuple[str, int, int]]) -> None: ...

    async def bind_worker(
        self,
        worker_id: str,
        secret_hash: str,
        now: int,
        credential: str = "",
        most: int | None = None,
    ) -> str | None:
        """Bind a worker id to a secret's hash on first join; the hash it is bound to. None:
        the id was free and its join token (`credential`) has `most` ids bound already."""
        ...

    async def worker_secret(self, worker_id: str) -> str | None:
        """The secret hash a worker id is bound to, if any."""
        ...

    async def forget_workers(
        self, before: int, keep: Collection[str] = (), unused_before: int | None = None
    ) -> list[str]:
        """Delete workers unheard of since `before` that hold no attempt, and those that
        never ran anything unheard of since `unused_before`, but those in `keep`; their ids."""
        ...

    async def lapsed(self, now: int) -> set[str]:
        """Workers with active attempts whose lease has run out."""
        ...

    async def assigned_here(self, before: int) -> list[tuple[AttemptRef, str]]:
        """(attempt, worker) assigned before `before` and not started, on workers leased to
        this master."""
        ...

    async def worker_master(self, worker_id: str, now: int) -> tuple[WorkerState, str | None]:
        """A worker's state and the master holding a live lease on it, if any."""
        ...

    async def list_workers(self) -> list[WorkerInfo]: ...


class RetentionStore(Protocol):
    """Deleting ended tasks and old output, and what the database holds."""

    async def collect(
        self, older_than: int, states: Sequence[TaskState], limit: int = 500,
        dry_run: bool = False, queues: tuple[bool, Sequence[str]] = (False, ()),
        own: Own = "ignore",
    ) -> int:  # fmt: skip
        """Delete up to `limit` ended tasks in these states that ended before `older_than`
        (ms), with their attempts, output and dependency rows, in one short transaction; never
        one another task still waits for. `queues`: (True, names) only in those queues,
        (False, names) in all others. `own`, a task's own retention: "ignore" it, "exclude"
        tasks that have one, or "only" those whose own retention is over by `older_than`
        (then: now). Returns how many (`dry_run`: would be)."""
        ...

    async def count_collectable(
        self, older_than: int, states: Sequence[TaskState],
        queues: tuple[bool, Sequence[str]] = (False, ()), own: Own = "ignore",
    ) -> int: ...  # fmt: skip

    async def expired_count(self, kind: str, key: str) -> int:
        """How many tasks of this job (`kind` "job") retention has deleted."""
        ...

    async def output_kept(self) -> int:
        """The bytes of output stored (reads every output row)."""
        ...

    async def expire_output(self, at_least: int, limit: int = 500) -> int:
        """Drop the stored output of the oldest ended tasks that still have some until
        `at_least` bytes are freed (at most `limit` tasks); the bytes freed. The tasks stay,
        their output counted as dropped."""
        ...

    async def storage(self) -> Storage:
        """What the database holds and takes (reads every output row: call it seldom)."""
        ...

    def disk_used(self) -> float | None:
        """How full the disk holding the database is (0-1), where it is on this machine."""
        ...

    async def reclaim(self) -> None:
        """Give space freed by deletions back to the file system, where the backend can
        (SQLite's incremental vacuum; PostgreSQL's autovacuum does it by itself)."""
        ...

    def disk_free(self) -> int | None:
        """Bytes free on the disk under the database (None: not known here)."""
        ...

    async def shrink_log(self) -> None:
        """Give back what the write-ahead log holds beyond what it needs (SQLite: after a
        large write that failed on a full disk, its log would keep that size)."""
        ...


class AllocationStore(Protocol):
    """Allocation queues, their allocations, and the lease to act on them."""

    async def add_queue(self, queue: AllocQueue) -> AllocQueue:
        """Raises AllocQueueExists (409) if one of that name exists."""
        ...

    async def list_queues(self) -> list[AllocQueue]: ...

    async def get_queue(self, name: str) -> AllocQueue: ...

    async def update_queue(self, queue: AllocQueue) -> AllocQueue: ...

    async def remove_queue(self, name: str) -> AllocQueue: ...

    async def save_allocation(self, allocation: Allocation) -> Allocation: ...

    async def allocations(self, queue: str, limit: int = 100) -> list[Allocation]: ...

    async def active_allocations(self) -> list[Allocation]: ...

    async def get_allocation(self, allocation_id: str) -> Allocation | None: ...

    async def lead(self, now: int, until: int) -> bool:
        """Take or renew this master's lease to act on the queues; True if it holds it."""
        ...


class Store(Protocol):
    """A backend: its lifecycle and notices here, its verbs in groups (`store.tasks`,
    `store.dispatch`, ...), each group one object over the backend's transactions."""

    origin: str  # the master using this store (names it in notices and worker leases)

    @property
    def tasks(self) -> TaskStore: ...

    @property
    def jobs(self) -> JobStore: ...

    @property
    def dispatch(self) -> DispatchStore: ...

    @property
    def attempts(self) -> AttemptStore: ...

    @property
    def schedules(self) -> ScheduleStore: ...

    @property
    def workers(self) -> WorkerStore: ...

    @property
    def retention(self) -> RetentionStore: ...

    @property
    def allocations(self) -> AllocationStore: ...

    @property
    def files(self) -> FileStore: ...

    @property
    def shared(self) -> bool:
        """True if other masters may be using the same database at once."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the store cannot serve queries right now."""
        ...

    async def listen(self, handler: Callable[[Notice], None]) -> None:
        """Call `handler` with every notice other masters send, until `close`."""
        ...

    async def notify(self, notice: Notice) -> None: ...

    async def fold_counts(self) -> None:
        """Fold the changes of the counts per state into their totals, where a backend keeps
        them as changes (PostgreSQL); called every liveness period."""
        ...
