"""What the API answers, typed for the SDK (TypedDicts over the JSON), and the options a
task is submitted with, declared once for `Client.submit` and `AsyncClient.submit`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict


class SubmitOptions(TypedDict, total=False):
    """Everything but the command itself that POST /v1/tasks takes. `on` is a selector
    ("zone in (a,b), gpu, !spot"); cpu, memory_mb and gpus are what the task needs free on a
    worker; `after` the task ids it runs after; `secret_env` variables that are passed to the
    process and never shown; `retry` a policy ({"initial_s": 1, "on_exit_codes": [75]});
    `queue` a name for quotas; `concurrency_key` + `concurrency_limit`: at most that many
    tasks with the key run at once across the grid; `stdin_base64` what the process reads on
    its standard input (base64 of the bytes)."""

    argv: Sequence[str]
    shell: bool
    env: Mapping[str, str]
    secret_env: Mapping[str, str]
    cwd: str
    timeout_s: float
    priority: int
    labels: Mapping[str, str]
    name: str
    max_attempts: int
    retry: Mapping[str, Any]
    queue_timeout_s: float
    idempotency_key: str
    on: str
    cpu: float
    memory_mb: int
    gpus: int
    after: Sequence[str]
    task_class: str
    placement: str
    queue: str
    concurrency_key: str
    concurrency_limit: int
    retain_s: float
    stdin_base64: str
    script_base64: str
    inputs: Sequence[Mapping[str, Any]]  # [{"name", "sha256", "mode"}]: uploaded first
    collect: Sequence[str]  # globs of files sent back after each attempt


class AttemptDict(TypedDict):
    attempt: int
    worker_id: str
    state: str
    assigned_at: str
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    signal: int | None
    error: str | None
    cpu_s: NotRequired[float | None]  # what it used, where its worker measured it
    peak_memory_bytes: NotRequired[int | None]
    io_read_bytes: NotRequired[int | None]
    io_write_bytes: NotRequired[int | None]


class TaskDict(TypedDict):
    id: str
    name: str | None
    state: str
    cmd: str | None
    argv: list[str]
    shell: bool
    env: dict[str, str]
    secret_env: list[str]  # names only
    cwd: str | None
    timeout_s: float | None
    priority: int
    labels: dict[str, str]
    attempt: int
    worker_id: str | None
    cancel_requested: bool
    created_at: str
    assigned_at: str | None
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    signal: int | None
    error: str | None
    max_attempts: int
    queue_timeout_s: float | None
    idempotency_key: str | None
    submitted_by: str | None
    owner: NotRequired[str]  # for fair share and quotas (absent from older masters)
    queue: NotRequired[str]
    concurrency_key: NotRequired[str | None]
    concurrency_limit: NotRequired[int | None]
    retain_s: NotRequired[float | None]
    stdin_bytes: NotRequired[int]  # the size of its stdin (absent from older masters)
    inputs: NotRequired[list[dict[str, Any]]]  # its input files: name, sha256, size, mode
    collect: NotRequired[list[str]]  # globs of the files collected after each attempt
    script_bytes: NotRequired[int]  # the size of the script it runs
    retry_at: str | None
    on: str | None
    cpu: float
    memory_mb: int
    gpus: int
    after: list[str]
    job: str | None
    job_index: int | None  # its index in its job (an array's; a --file's command)
    pinned_worker: str | None
    task_class: str | None
    placement: str
    unschedulable: str | None
    cpu_s: NotRequired[float | None]  # of its final attempt, where measured
    peak_memory_bytes: NotRequired[int | None]
    attempts: list[AttemptDict] | None


class JobTaskDict(TypedDict):
    id: str
    index: int | None
    state: str
    exit_code: int | None
    signal: int | None
    error: str | None
    worker_id: str | None


class JobDict(TypedDict):
    """A job as GET /v1/jobs/ID answers (see its schema)."""

    id: str
    kind: str  # array (an array, a --file batch) or broadcast
    name: str | None
    owner: str | None
    command: str
    created_at: str | None
    size: int
    ended: int
    succeeded: int
    max_running: int | None
    counts: dict[str, int]
    unsuccessful: list[JobTaskDict]  # by index, the first 1,000
    tasks: list[TaskDict]  # the first 1,000 (none when asked tasks=False)
    expired: NotRequired[int]  # its tasks deleted by retention since (not listed)


class WorkerDict(TypedDict):
    id: str
    hostname: str
    labels: dict[str, str]
    slots: int
    running: int  # started
    assigned: NotRequired[int]  # not started yet: on their way, or held until a slot frees
    state: str
    version: str
    legacy: bool
    connected_at: str | None
    last_seen: str | None
    quarantined: NotRequired[str | None]  # why it gets no new work for now
    containment: NotRequired[str]  # "cgroup (...)", "subreaper" or "none"


class OutputStream(TypedDict):
    text: str
    bytes_total: int
    bytes_dropped: int
    expired: NotRequired[bool]  # dropped to keep within the grid's --output-budget


class TaskOutput(TypedDict):
    task_id: str
    state: str
    stdout: OutputStream
    stderr: OutputStream


class OutputSegment(TypedDict):
    stream: str  # stdout or stderr
    offset: int  # of its first byte, in its stream
    at: str | None  # when the worker read it (ISO 8601, UTC), if it said
    data_base64: str


class TaskSegments(TaskOutput):
    """Both streams in the order written: a segment per run (GET .../output/segments)."""

    segments: list[OutputSegment]


class InputDict(TypedDict):
    """An uploaded input: its sha256, its size, and whether the master held it already."""

    sha256: str
    size: int
    held: bool


class FileDict(TypedDict):
    """A file collected from an attempt: complete, incomplete or dropped (`reason`)."""

    attempt: int
    path: str
    state: str
    size: int
    sha256: str
    mode: int
    reason: str
    collected_at: str | None
