"""JSON shapes of the HTTP API (pydantic), and their conversion to and from the domain."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from gridrun.model import (
    MAX_PRIORITY,
    StreamOutput,
    Task,
    TaskSpec,
    TaskState,
    WorkerInfo,
    WorkerState,
    make_spec,
)

MAX_BATCH = 10_000


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TaskIn(_In):
    """One task. Give `cmd` (a command line, split like a shell would, or run by /bin/sh when
    `shell` is true) or `argv` (the exact program and arguments)."""

    cmd: str | None = Field(None, examples=["echo hello"])
    argv: list[str] | None = Field(None, examples=[["python3", "train.py", "--epochs", "3"]])
    shell: bool = False
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    priority: Annotated[int, Field(ge=-MAX_PRIORITY, le=MAX_PRIORITY)] = 0
    labels: dict[str, str] = Field(
        default_factory=dict, description="Run only on workers with all these labels."
    )
    name: str | None = None

    def to_spec(self) -> TaskSpec:
        return make_spec(
            cmd=self.cmd,
            argv=self.argv,
            shell=self.shell,
            env=self.env,
            cwd=self.cwd,
            timeout_s=self.timeout_s,
            priority=self.priority,
            labels=self.labels,
            name=self.name,
        )


class BatchIn(_In):
    tasks: Annotated[list[TaskIn], Field(min_length=1, max_length=MAX_BATCH)]


class LegacyTaskIn(_In):
    """The article's request body."""

    cmd: str


def _iso(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else None


class TaskOut(BaseModel):
    id: str
    name: str | None
    state: TaskState
    cmd: str | None
    argv: list[str]
    shell: bool
    env: dict[str, str]
    cwd: str | None
    timeout_s: float | None
    priority: int
    labels: dict[str, str]
    attempt: int
    worker_id: str | None
    cancel_requested: bool
    created_at: datetime
    assigned_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    signal: int | None
    error: str | None

    @classmethod
    def of(cls, task: Task) -> TaskOut:
        spec = task.spec
        created = _iso(task.created_at)
        assert created is not None
        return cls(
            id=task.id,
            name=spec.name,
            state=task.state,
            cmd=spec.cmd,
            argv=list(spec.argv),
            shell=spec.shell,
            env=dict(spec.env),
            cwd=spec.cwd,
            timeout_s=spec.timeout_s,
            priority=spec.priority,
            labels=dict(spec.labels),
            attempt=task.attempt,
            worker_id=task.worker_id,
            cancel_requested=task.cancel_requested,
            created_at=created,
            assigned_at=_iso(task.assigned_at),
            started_at=_iso(task.started_at),
            finished_at=_iso(task.finished_at),
            exit_code=task.exit_code,
            signal=task.signal,
            error=task.error,
        )


class BatchOut(BaseModel):
    tasks: list[TaskOut]


class TaskListOut(BaseModel):
    tasks: list[TaskOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next (older) page; null on the last page."
    )


class StreamOut(BaseModel):
    text: str = Field(description="The kept tail, decoded as UTF-8 (invalid bytes replaced).")
    bytes_total: int
    bytes_dropped: int

    @classmethod
    def of(cls, out: StreamOutput) -> StreamOut:
        return cls(
            text=out.data.decode("utf-8", "replace"),
            bytes_total=out.total,
            bytes_dropped=out.dropped,
        )


class OutputOut(BaseModel):
    task_id: str
    state: TaskState
    stdout: StreamOut
    stderr: StreamOut


class WorkerOut(BaseModel):
    id: str
    hostname: str
    labels: dict[str, str]
    slots: int
    running: int
    state: WorkerState
    version: str
    legacy: bool
    connected_at: datetime | None
    last_seen: datetime | None

    @classmethod
    def of(cls, worker: WorkerInfo) -> WorkerOut:
        return cls(
            id=worker.id,
            hostname=worker.hostname,
            labels=dict(worker.labels),
            slots=worker.slots,
            running=worker.running,
            state=worker.state,
            version=worker.version,
            legacy=worker.legacy,
            connected_at=_iso(worker.connected_at),
            last_seen=_iso(worker.last_seen),
        )


class WorkerListOut(BaseModel):
    workers: list[WorkerOut]


class LegacyTaskOut(BaseModel):
    id: str
    state: TaskState


class StatsOut(BaseModel):
    tasks: dict[TaskState, int]
    workers: dict[WorkerState, int]


class HealthOut(BaseModel):
    status: str
    version: str
    workers_connected: int
    warnings: list[str] = Field(default_factory=list)


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[str] | None = None
