"""The domain of gridrun: what a task is, its lifecycle, and how a worker's report changes it.

Pure: no I/O, no imports of other gridrun modules but errors and resources (what a task asks
of a worker). Every state change anywhere in the system is decided by `transition` against the
one table `TRANSITIONS`. Validating what a client asks for (limits, quoting) is `gridrun.spec`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gridrun.errors import InvalidTransition
from gridrun.resources import NO_RESOURCES, Resources, Term, offered

SHELL = "/bin/sh"

DEFAULT_OUTPUT_CAP = 1024 * 1024
# a worker's id: printable in logs, tables and certificates, safe in a URL path
WORKER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")
WORKER_ID_RULE = "1-128 of A-Z a-z 0-9 _ . @ : - (letter or digit first)"
TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what either side of the wire accepts as one


class TaskState(enum.StrEnum):
    # Waiting for the tasks it runs after (`after`) to succeed.
    WAITING = "waiting"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"
    # Sent to a legacy (article) worker, which never reports back: we cannot claim success.
    DELIVERED = "delivered"
    # Not started within its queue_timeout_s.
    EXPIRED = "expired"
    # Refused by the worker's policy (allowlist, shell, cwd roots): never run.
    REJECTED = "rejected"
    # Never run: a task it was to run after did not succeed.
    SKIPPED = "skipped"


class WorkerState(enum.StrEnum):
    ONLINE = "online"
    DRAINING = "draining"  # finishing what it runs, taking nothing new
    OFFLINE = "offline"


class Placement(enum.StrEnum):
    """Which of the workers that can take a task gets it."""

    SPREAD = "spread"  # the least loaded (the default)
    PACK = "pack"  # the busiest that has room: fill one worker before the next


class Stream(enum.IntEnum):
    """A task's output streams, numbered as on the wire and in the store."""

    STDOUT = 1
    STDERR = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class Outcome(enum.StrEnum):
    """How an attempt ended, as the worker saw it."""

    EXITED = "exited"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SPAWN_FAILED = "spawn_failed"
    NO_SLOT = "no_slot"
    WORKER_STOPPED = "worker_stopped"
    REJECTED = "rejected"
    LOST = "lost"  # the master's judgement, never a worker's report: it missed a deadline


TERMINAL: frozenset[TaskState] = frozenset(
    {
        TaskState.SUCCEEDED,
        TaskState.FAILED,
        TaskState.TIMED_OUT,
        TaskState.CANCELLED,
        TaskState.LOST,
        TaskState.DELIVERED,
        TaskState.EXPIRED,
        TaskState.REJECTED,
        TaskState.SKIPPED,
    }
)
ACTIVE: frozenset[TaskState] = frozenset({TaskState.ASSIGNED, TaskState.RUNNING})

_ENDINGS = frozenset(
    {
        TaskState.SUCCEEDED,
        TaskState.FAILED,
        TaskState.TIMED_OUT,
        TaskState.CANCELLED,
        TaskState.LOST,
    }
)

TRANSITIONS: Mapping[TaskState, frozenset[TaskState]] = {
    TaskState.WAITING: frozenset({TaskState.QUEUED, TaskState.SKIPPED, TaskState.CANCELLED}),
    TaskState.QUEUED: frozenset({TaskState.ASSIGNED, TaskState.CANCELLED, TaskState.EXPIRED}),
    # assigned -> queued: the worker had no free slot and ran nothing, or a retry.
    # assigned -> an ending: the process could not start, or was cancelled before it did.
    TaskState.ASSIGNED: _ENDINGS
    | {TaskState.RUNNING, TaskState.QUEUED, TaskState.DELIVERED, TaskState.REJECTED},
    # running -> queued: the attempt failed, timed out or was lost, and the retry policy
    # grants another attempt (see RetryPolicy.delay_after).
    TaskState.RUNNING: _ENDINGS | {TaskState.QUEUED},
    **{state: frozenset() for state in TERMINAL},
}


def transition(current: TaskState, target: TaskState) -> TaskState:
    """Return `target` if the lifecycle allows `current -> target`, else raise."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(f"a {current} task cannot become {target}")
    return target


RETRYABLE = frozenset({TaskState.FAILED, TaskState.TIMED_OUT, TaskState.LOST})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts a task gets and how long to wait between them. The default is one
    attempt: a command may not be idempotent, so gridrun never re-runs one unasked."""

    max_attempts: int = 1
    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 60.0
    on_exit_codes: tuple[int, ...] | None = None  # retry `failed` only for these; None: any

    def delay_after(self, tries: int, ended: TaskState, exit_code: int | None) -> float | None:
        """Seconds before the next try after try number `tries` ended `ended`; None: final."""
        if tries >= self.max_attempts or ended not in RETRYABLE:
            return None
        codes = self.on_exit_codes
        if ended is TaskState.FAILED and codes is not None and exit_code not in codes:
            return None
        return float(min(self.max_s, self.initial_s * self.factor ** max(tries - 1, 0)))


@dataclass(frozen=True, slots=True)
class Sealed:
    """A task's secret_env as the master keeps it: the variables' names, and their values in a
    token only the master's key opens (see gridrun.master.core.sealing)."""

    names: tuple[str, ...]
    token: str


ANONYMOUS = "anonymous"  # the owner of what is submitted where the master has no tokens
DEFAULT_QUEUE = "default"


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most `limit` tasks with this key run at once, across the whole grid. A key is its
    owner's (`scope`: the owner whose tasks it counts), unless an admin declared it grid-wide
    (`scope` ""): then every owner's tasks naming it share it. The store sets the scope and
    holds each key's one limit (see TaskStore.add_tasks)."""

    key: str
    limit: int
    scope: str = ""

    @property
    def counted(self) -> str:
        """The name its running tasks are counted under: scope and key (an owner's name
        holds no '/', so no two keys share one)."""
        return f"{self.scope}/{self.key}"


@dataclass(frozen=True, slots=True)
class InputFile:
    """A file that travels with a task: written into each attempt's working directory as
    `name` (a relative path), with `mode`'s permission bits; its bytes are stored once, by
    their sha256 (`digest`), however many tasks use them."""

    name: str
    digest: str
    size: int
    mode: int = 0o644


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What to run, where, and with which limits. `argv` is what the worker executes."""

    argv: tuple[str, ...]
    cmd: str | None = None
    shell: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    timeout_s: float | None = None
    priority: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None
    retry: RetryPolicy = RetryPolicy()
    queue_timeout_s: float | None = None
    idempotency_key: str | None = None
    submitted_by: str | None = None  # the token's name (set by the master, never by a client)
    selector: tuple[Term, ...] = ()  # beyond `labels` (equality): !=, in, notin, exists, !
    resources: Resources = NO_RESOURCES
    after: tuple[str, ...] = ()  # task ids that must succeed before it runs
    worker: str | None = None  # run on this worker only (a broadcast job's tasks)
    job: str | None = None  # the job it belongs to (an array, a --file batch, a broadcast)
    job_index: int | None = None  # its index in its job (an array's; a --file's line)
    task_class: str | None = None  # workers may cap how many of a class run at once
    placement: Placement = Placement.SPREAD
    secrets: Sealed | None = None  # secret_env: sent to the worker, never shown
    queue: str = DEFAULT_QUEUE  # a name, for quotas and for finding one's tasks
    concurrency: Concurrency | None = None
    retain_s: float | None = None  # kept this long after it ends (None: the grid's rule)
    stdin: bytes | None = None  # what the process reads on its standard input (None: nothing)
    script: bytes | None = None  # a script the worker runs as a file, `argv` its arguments
    inputs: tuple[InputFile, ...] = ()  # files written into its working directory first
    collect: tuple[str, ...] = ()  # globs of files sent back from it after each attempt

    @property
    def files(self) -> bool:
        """It has a working directory of its own: inputs to write there, or files to collect."""
        return bool(self.inputs or self.collect)

    @property
    def owner(self) -> str:
        """Whose task it is, for fair share and quotas: the token's name."""
        return self.submitted_by or ANONYMOUS

    @property
    def legacy_ok(self) -> bool:
        """True if the article's worker (which splits on single spaces) would run exactly this."""
        return (
            not self.shell
            and not self.env
            and self.secrets is None
            and self.cwd is None
            and self.timeout_s is None
            and not self.labels
            and not self.selector
            and not self.resources
            and self.worker is None
            and self.stdin is None
            and self.script is None
            and not self.files
            and all(arg.split() == [arg] for arg in self.argv)  # non-empty, no whitespace
        )


@dataclass(frozen=True, slots=True)
class AttemptRef:
    task_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Report:
    """A worker's account of how an attempt ended."""

    outcome: Outcome
    exit_code: int | None = None
    signal: int | None = None
    started_at: int | None = None  # epoch milliseconds
    finished_at: int | None = None
    error: str = ""
    usage: Usage | None = None  # what the attempt used, where the worker could measure it


@dataclass(frozen=True, slots=True)
class Usage:
    """What an attempt used, measured by the worker (its cgroup). None: not measured."""

    cpu_s: float | None = None  # user + system, every process of the attempt
    peak_memory_bytes: int | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None


def settle(
    task: Task, ended: TaskState, exit_code: int | None, tries: int
) -> tuple[TaskState, float | None]:
    """Where a task goes when its current attempt — its `tries`-th real try — ends `ended`:
    that state, or back to queued with a delay when its retry policy grants another try (never
    when a cancel was asked)."""
    if task.cancel_requested:
        return transition(task.state, ended), None
    delay = task.spec.retry.delay_after(tries, ended, exit_code)
    if delay is None:
        return transition(task.state, ended), None
    return transition(task.state, TaskState.QUEUED), delay


def state_after(report: Report) -> TaskState:
    """The state a task reaches when its current attempt ends as `report` says."""
    match report.outcome:
        case Outcome.EXITED:
            return TaskState.SUCCEEDED if report.exit_code == 0 else TaskState.FAILED
        case Outcome.TIMED_OUT:
            return TaskState.TIMED_OUT
        case Outcome.CANCELLED:
            return TaskState.CANCELLED
        case Outcome.NO_SLOT:
            return TaskState.QUEUED
        case Outcome.REJECTED:
            return TaskState.REJECTED
        case Outcome.SPAWN_FAILED | Outcome.WORKER_STOPPED:
            return TaskState.FAILED
        case Outcome.LOST:
            return TaskState.LOST


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    seq: int
    spec: TaskSpec
    state: TaskState
    created_at: int
    attempt: int = 0
    worker_id: str | None = None
    cancel_requested: bool = False
    assigned_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    not_before: int | None = None  # epoch ms: a retry waits in the queue until then
    unschedulable: str | None = None  # why no live worker could ever take it, while queued
    usage: Usage | None = None  # what its final attempt used (CPU, peak memory), if measured

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def ref(self) -> AttemptRef:
        return AttemptRef(self.id, self.attempt)

    def held_by(self, ref: AttemptRef, worker_id: str) -> bool:
        """Fencing: a report counts only for the current attempt, from the worker holding it."""
        return (
            self.state in ACTIVE
            and self.attempt == ref.attempt
            and self.worker_id == worker_id
            and self.id == ref.task_id
        )


@dataclass(frozen=True, slots=True)
class Schedule:
    """A task made on a cron schedule (UTC), once per slot: `next_at` is the next slot to fire."""

    id: str
    cron: str
    spec: TaskSpec
    created_at: int
    next_at: int
    name: str | None = None
    last_fired: int | None = None  # the slot it last fired for (epoch ms)
    last_task: str | None = None  # the task that slot made
    over_quota: int = 0  # slots passed over because its owner or queue was at a quota


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at running a task: where, when, and how it ended."""

    task_id: str
    attempt: int
    worker_id: str
    state: TaskState
    assigned_at: int
    started_at: int | None = None
    finished_at: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    usage: Usage | None = None  # what it used, where its worker measured it


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    hostname: str
    labels: Mapping[str, str]
    slots: int
    state: WorkerState
    version: str = ""
    legacy: bool = False
    connected_at: int | None = None
    last_seen: int | None = None
    running: int = 0  # its tasks that have started
    resources: Mapping[str, int] = field(default_factory=dict)  # cpus, memory_mb, gpus
    lease_until: int | None = None  # epoch ms: no master has heard from it since then
    containment: str = ""  # how it contains its tasks ("cgroup (...)", "subreaper", "none")
    # its tasks not started yet: sent and on their way, or held (prefetched) for a free slot
    assigned: int = 0

    def state_at(self, now_ms: int) -> WorkerState:
        """Its state, except that a worker whose lease ran out is offline whatever its row
        says (its master may have died without recording it)."""
        lapsed = self.lease_until is None or self.lease_until < now_ms
        return (
            WorkerState.OFFLINE if self.state is not WorkerState.OFFLINE and lapsed else self.state
        )


def capacity_of(worker: WorkerInfo) -> Resources:
    return offered(worker.resources)


def workers_by_state(workers: Iterable[WorkerInfo]) -> dict[WorkerState, int]:
    """How many workers are in each state (every state present, zero included)."""
    counts = dict.fromkeys(WorkerState, 0)
    for worker in workers:
        counts[worker.state] += 1
    return counts


@dataclass(frozen=True, slots=True)
class StreamOutput:
    """The kept tail of one output stream, and how many bytes before it were dropped."""

    data: bytes = b""
    total: int = 0

    @property
    def dropped(self) -> int:
        return self.total - len(self.data)

    def append(self, offset: int, chunk: bytes, cap: int) -> StreamOutput:
        """Add `chunk`, written at byte `offset` of the stream; keep only the last `cap` bytes.

        Bytes we already hold are skipped (a re-sent chunk). A gap (output the worker produced but
        could not send, e.g. while disconnected) counts as dropped; since the kept tail must stay
        contiguous, what we held before the gap is dropped too.
        """
        end = offset + len(chunk)
        if end <= self.total:
            return self
        data = self.data + chunk[self.total - offset :] if offset <= self.total else chunk
        return StreamOutput(data=data[len(data) - cap :] if len(data) > cap else data, total=end)
