"""The values the store's verbs take and give (re-exported by `gridrun.store`)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from gridrun.dispatching import Candidate, Lane, Placed
from gridrun.model import AttemptRef, Report, Stream, StreamOutput, Task, TaskSpec, TaskState
from gridrun.output import Mark, Segment, interleave


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
    job_index: int | None = None  # (with `job`) the one at this index
    since: int | None = None  # created at or after (epoch ms)
    until: int | None = None  # created before (epoch ms)


@dataclass(frozen=True, slots=True)
class JobSummary:
    """A job as a whole: its first task (what it runs, whose, when: the template every task
    of an array shares), how many tasks it has and in which states, and (`unsuccessful`, by
    index, up to the number asked) the ended tasks that did not succeed."""

    id: str
    first: Task
    size: int
    counts: Mapping[TaskState, int]
    unsuccessful: Sequence[Task] = ()


# how a listing is ordered: newest first (paged), or the largest first by what it took (the
# top `limit` of all that match; those not run or not measured last)
TaskOrder = Literal["created", "duration", "cpu", "memory"]


@dataclass(frozen=True, slots=True)
class Page:
    tasks: list[Task]
    next_cursor: int | None  # the seq to continue below (newest first), None at the end


# a task's own retention in a retention pass: "ignore" it, "exclude" tasks that have one,
# or "only" those (see RetentionStore.collect)
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
    file_bytes: int = 0  # collected files kept
    input_bytes: int = 0  # inputs held (each once, however many tasks use it)


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
    marks: Sequence[Mark] = ()  # where runs began, in the order read (see gridrun.output)


@dataclass(frozen=True, slots=True)
class Finished:
    ref: AttemptRef
    report: Report


WorkerReport = Started | Output | Finished


@dataclass(frozen=True, slots=True)
class TaskOutput:
    stdout: StreamOutput = field(default_factory=StreamOutput)
    stderr: StreamOutput = field(default_factory=StreamOutput)
    marks: tuple[Mark, ...] = ()  # how the two interleave (see gridrun.output)

    def in_order(self) -> list[Segment]:
        """The kept output as it was written, across both streams."""
        return interleave(self.stdout, self.stderr, self.marks)


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
