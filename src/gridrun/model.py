"""The domain of gridrun: what a task is, its lifecycle, and how a worker's report changes it.

Pure: no I/O, no imports of other gridrun modules except errors. Every state change anywhere in
the system is decided by `transition` against the one table `TRANSITIONS`.
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from gridrun.errors import InvalidSpec, InvalidTransition

SHELL = "/bin/sh"

# Field limits: generous for real commands, small enough that no request can hurt the master.
MAX_CMD_BYTES = 128 * 1024
MAX_ARGV_ITEMS = 4096
MAX_ENV_ITEMS = 256
MAX_ENV_BYTES = 64 * 1024
MAX_LABELS = 64
MAX_LABEL_BYTES = 256
MAX_NAME_BYTES = 256
MAX_CWD_BYTES = 4096
MAX_TIMEOUT_S = 7 * 24 * 3600
MAX_PRIORITY = 1_000_000
MAX_ATTEMPTS = 100
MAX_BACKOFF_S = 24 * 3600
MAX_KEY_BYTES = 256
DEFAULT_OUTPUT_CAP = 1024 * 1024


class TaskState(enum.StrEnum):
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


class WorkerState(enum.StrEnum):
    ONLINE = "online"
    DRAINING = "draining"  # finishing what it runs, taking nothing new
    OFFLINE = "offline"


class Outcome(enum.StrEnum):
    """How an attempt ended, as the worker saw it."""

    EXITED = "exited"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SPAWN_FAILED = "spawn_failed"
    NO_SLOT = "no_slot"
    WORKER_STOPPED = "worker_stopped"


TERMINAL: frozenset[TaskState] = frozenset(
    {
        TaskState.SUCCEEDED,
        TaskState.FAILED,
        TaskState.TIMED_OUT,
        TaskState.CANCELLED,
        TaskState.LOST,
        TaskState.DELIVERED,
        TaskState.EXPIRED,
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
    TaskState.QUEUED: frozenset({TaskState.ASSIGNED, TaskState.CANCELLED, TaskState.EXPIRED}),
    # assigned -> queued: the worker had no free slot and ran nothing, or a retry.
    # assigned -> an ending: the process could not start, or was cancelled before it did.
    TaskState.ASSIGNED: _ENDINGS | {TaskState.RUNNING, TaskState.QUEUED, TaskState.DELIVERED},
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

    @property
    def legacy_ok(self) -> bool:
        """True if the article's worker (which splits on single spaces) would run exactly this."""
        return (
            not self.shell
            and not self.env
            and self.cwd is None
            and self.timeout_s is None
            and not self.labels
            and all(arg and not any(c.isspace() for c in arg) for arg in self.argv)
        )

    @property
    def display(self) -> str:
        return self.cmd if self.cmd is not None else shlex.join(self.argv)


def _check_text(what: str, value: str, limit: int) -> None:
    if "\x00" in value:
        raise InvalidSpec(f"{what} must not contain NUL bytes")
    if len(value.encode("utf-8", "surrogatepass")) > limit:
        raise InvalidSpec(f"{what} is longer than {limit} bytes")


def make_spec(
    *,
    cmd: str | None = None,
    argv: list[str] | tuple[str, ...] | None = None,
    shell: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout_s: float | None = None,
    priority: int = 0,
    labels: Mapping[str, str] | None = None,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    queue_timeout_s: float | None = None,
    idempotency_key: str | None = None,
) -> TaskSpec:
    """Validate a request and build its spec; raise InvalidSpec with a human message."""
    if (cmd is None) == (argv is None):
        raise InvalidSpec("give exactly one of 'cmd' (a command line) or 'argv' (a list)")
    if cmd is not None:
        _check_text("cmd", cmd, MAX_CMD_BYTES)
        if not cmd.strip():
            raise InvalidSpec("cmd must not be empty")
        if shell:
            resolved: tuple[str, ...] = (SHELL, "-c", cmd)
        else:
            try:
                resolved = tuple(shlex.split(cmd))
            except ValueError as exc:
                raise InvalidSpec(f"cmd cannot be parsed as a command line: {exc}") from None
            if not resolved:
                raise InvalidSpec("cmd must not be empty")
    else:
        assert argv is not None
        if not argv or not argv[0]:
            raise InvalidSpec("argv must be a non-empty list whose first item is the program")
        if len(argv) > MAX_ARGV_ITEMS:
            raise InvalidSpec(f"argv has more than {MAX_ARGV_ITEMS} items")
        total = 0
        for item in argv:
            _check_text("argv item", item, MAX_CMD_BYTES)
            total += len(item)
        if total > MAX_CMD_BYTES:
            raise InvalidSpec(f"argv is longer than {MAX_CMD_BYTES} bytes in all")
        resolved = (SHELL, "-c", shlex.join(argv)) if shell else tuple(argv)
    env = dict(env or {})
    if len(env) > MAX_ENV_ITEMS:
        raise InvalidSpec(f"env has more than {MAX_ENV_ITEMS} variables")
    env_bytes = 0
    for key, value in env.items():
        if not key or "=" in key:
            raise InvalidSpec(f"env name {key!r} is invalid (empty or contains '=')")
        _check_text("env name", key, MAX_ENV_BYTES)
        _check_text(f"env value of {key}", value, MAX_ENV_BYTES)
        env_bytes += len(key) + len(value)
    if env_bytes > MAX_ENV_BYTES:
        raise InvalidSpec(f"env is larger than {MAX_ENV_BYTES} bytes")
    if cwd is not None:
        _check_text("cwd", cwd, MAX_CWD_BYTES)
        if not cwd:
            raise InvalidSpec("cwd must not be empty when given")
    if timeout_s is not None and not (0 < timeout_s <= MAX_TIMEOUT_S):
        raise InvalidSpec(f"timeout_s must be greater than 0 and at most {MAX_TIMEOUT_S}")
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidSpec(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")
    labels = dict(labels or {})
    if len(labels) > MAX_LABELS:
        raise InvalidSpec(f"labels has more than {MAX_LABELS} entries")
    for key, value in labels.items():
        if not key:
            raise InvalidSpec("label names must not be empty")
        _check_text("label name", key, MAX_LABEL_BYTES)
        _check_text(f"label value of {key}", value, MAX_LABEL_BYTES)
    if name is not None:
        _check_text("name", name, MAX_NAME_BYTES)
    retry = retry or RetryPolicy()
    if not 1 <= retry.max_attempts <= MAX_ATTEMPTS:
        raise InvalidSpec(f"max_attempts must be between 1 and {MAX_ATTEMPTS}")
    if not (0 <= retry.initial_s <= MAX_BACKOFF_S and 0 <= retry.max_s <= MAX_BACKOFF_S):
        raise InvalidSpec(f"retry delays must be between 0 and {MAX_BACKOFF_S} seconds")
    if not 1 <= retry.factor <= 100:
        raise InvalidSpec("retry factor must be between 1 and 100")
    if queue_timeout_s is not None and not (0 < queue_timeout_s <= MAX_TIMEOUT_S):
        raise InvalidSpec(f"queue_timeout_s must be greater than 0 and at most {MAX_TIMEOUT_S}")
    if idempotency_key is not None:
        _check_text("idempotency_key", idempotency_key, MAX_KEY_BYTES)
        if not idempotency_key:
            raise InvalidSpec("idempotency_key must not be empty when given")
    return TaskSpec(
        argv=resolved,
        cmd=cmd,
        shell=shell,
        env=env,
        cwd=cwd,
        timeout_s=timeout_s,
        priority=priority,
        labels=labels,
        name=name,
        retry=retry,
        queue_timeout_s=queue_timeout_s,
        idempotency_key=idempotency_key,
    )


def parse_labels(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Parse ``k=v`` strings (CLI --label / --on) into a mapping."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidSpec(f"label {item!r} must look like key=value")
        labels[key.strip()] = value.strip()
    return labels


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A worker matches a task when it has every label the task selects, with the same value."""
    return all(labels.get(key) == value for key, value in selector.items())


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
        case Outcome.SPAWN_FAILED | Outcome.WORKER_STOPPED:
            return TaskState.FAILED


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
    running: int = 0


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
