"""The durable record of tasks and workers: a small `Store` protocol speaking domain verbs.

Every method is one transaction: when it returns, what it changed is committed. Backends:
`gridrun.store.sqlite` (the default, one file, one master) and `gridrun.store.postgres` (several
masters on one database). Both share their verbs (`gridrun.store.relational`) and decide state
changes only through `gridrun.model` (transition table, fencing, report -> state).

Several masters on one database learn of each other's changes by `Notice`s (PostgreSQL
LISTEN/NOTIFY), and judge each other's workers by leases kept in the workers table.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from gridrun.dispatching import Candidate, Lane, Placed, Planner, Quota
from gridrun.model import (
    Attempt,
    AttemptRef,
    Report,
    Schedule,
    Stream,
    StreamOutput,
    Task,
    TaskSpec,
    TaskState,
    WorkerInfo,
    WorkerState,
)


@dataclass(frozen=True, slots=True)
class NewTask:
    id: str
    spec: TaskSpec


@dataclass(frozen=True, slots=True)
class TaskFilter:
    states: Sequence[TaskState] = ()
    worker_id: str | None = None
    name: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)  # tasks asking for all of these
    owner: str | None = None
    queue: str | None = None
    job: str | None = None
    since: int | None = None  # created at or after (epoch ms)
    until: int | None = None  # created before (epoch ms)


# how a listing is ordered: newest first (paged), or the largest first by what it took (the
# top `limit` of all that match; those not run or not measured last)
TaskOrder = Literal["created", "duration", "cpu", "memory"]


@dataclass(frozen=True, slots=True)
class Page:
    tasks: list[Task]
    next_cursor: int | None  # the seq to continue below (newest first), None at the end


# a task's own retention in a retention pass: "ignore" it, "exclude" tasks that have one,
# or "only" those (see Store.collect)
Own = Literal["ignore", "exclude", "only"]


@dataclass(frozen=True, slots=True)
class Firing:
    """One schedule's slot to fire: make `task`, move the schedule on to `next_at`. With no
    task (its owner or queue is at a quota), the slot is passed over and counted."""

    schedule_id: str
    slot: int
    task: NewTask | None
    next_at: int


@dataclass(frozen=True, slots=True)
class Storage:
    db_bytes: int | None  # the database's size (SQLite: file and log; PostgreSQL: the database)
    output_bytes: int  # tasks' stored output
    oldest_task_ms: int | None  # when the oldest task kept was created
    disk_used: float | None  # the fraction used of the disk holding it (SQLite only)


@dataclass(frozen=True, slots=True)
class LaneRead:
    """The lanes a dispatch pass reads in its own transaction: at most `limit` after the key
    `after` ("": from the first), of which it looks into those `takes` accepts."""

    after: str
    limit: int
    takes: Callable[[Lane], bool]


@dataclass(frozen=True, slots=True)
class Pass:
    """What one dispatch pass read and did: the lanes listed, the heads read of those it
    looked into (by lane key), what the plan placed and what was claimed."""

    lanes: list[Lane]
    heads: dict[str, list[Candidate]]
    placed: Placed
    claimed: list[Task]


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one worker report did: `applied` (False: it was stale, nothing changed)
    and, for a Finished, the task after it."""

    task: Task | None
    applied: bool


@dataclass(frozen=True, slots=True)
class Started:
    """A worker says an attempt started (or, if it announces starts, is about to)."""

    ref: AttemptRef
    started_at: int


@dataclass(frozen=True, slots=True)
class Output:
    """Output of an attempt: (stream, offset, data) chunks."""

    ref: AttemptRef
    chunks: Sequence[tuple[Stream, int, bytes]]


@dataclass(frozen=True, slots=True)
class Finished:
    ref: AttemptRef
    report: Report


WorkerReport = Started | Output | Finished


@dataclass(frozen=True, slots=True)
class TaskOutput:
    stdout: StreamOutput = field(default_factory=StreamOutput)
    stderr: StreamOutput = field(default_factory=StreamOutput)


class NoticeKind(enum.StrEnum):
    """What a notice says: there is work to claim (`queued`); a task changed: wake its waiters
    and followers (`task ID`); stop a task, if your worker runs it (`cancel ID`); drain a
    worker, if it is connected to you (`drain WORKER`); and, made by a store itself after its
    listening connection came back, notices may have been missed (`resync`)."""

    QUEUED = "queued"
    TASK = "task"
    CANCEL = "cancel"
    DRAIN = "drain"
    RESYNC = "resync"


NOTICE_KINDS = frozenset(NoticeKind)


@dataclass(frozen=True, slots=True)
class Notice:
    """What one master tells the others (see NoticeKind)."""

    origin: str  # the master that sent it
    kind: NoticeKind
    subject: str = ""

    def __str__(self) -> str:
        return f"{self.origin} {self.kind} {self.subject}"

    @classmethod
    def parse(cls, text: str) -> Notice | None:
        """A notice as another master sent it; None for one this master cannot read (a
        newer master's kind, or not a notice)."""
        parts = text.split(" ", 2)
        if len(parts) != 3 or parts[1] not in NOTICE_KINDS:
            return None
        return cls(parts[0], NoticeKind(parts[1]), parts[2])


class Store(Protocol):
    origin: str  # the master using this store (names it in notices and worker leases)

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

    # -- tasks, client side
    async def add_tasks(self, tasks: Sequence[NewTask], now: int) -> list[Task]: ...

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

    async def fold_counts(self) -> None:
        """Fold the changes of the counts per state into their totals, where a backend keeps
        them as changes (PostgreSQL); called every liveness period."""
        ...

    # -- scheduling
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

    # -- retention
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

    async def expire(self, now: int) -> list[Task]:
        """End as expired the queued tasks past their queue timeout."""
        ...

    # -- worker reports (fenced by attempt and worker)

    async def record_start(self, ref: AttemptRef, worker_id: str, started_at: int) -> bool: ...

    async def append_output(
        self,
        ref: AttemptRef,
        worker_id: str,
        chunks: Sequence[tuple[Stream, int, bytes]],
        cap: int,
    ) -> bool:
        """Append (stream, offset, data) chunks, stream 1 = stdout and 2 = stderr."""
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

    # -- schedules
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

    # -- workers and their leases
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
