"""What the allocation queues' routes take and answer (`/v1/alloc/...`)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from gridrun.allocating import Allocation, AllocQueue, QueueConfig
from gridrun.errors import InvalidSpec
from gridrun.resources import Resources
from gridrun.spec import MAX_CPU, MAX_GPUS, MAX_MEMORY_MB, check_env

QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MAX_ARGS = 256
MAX_TIME_S = 366 * 86400.0


def check_queue_name(name: str) -> str:
    if not QUEUE_NAME.fullmatch(name):
        raise InvalidSpec(
            f"allocation queue {name!r}: use 1-64 of A-Z a-z 0-9 _ . @ -, beginning with a"
            " letter or digit"
        )
    return name


def _args(what: str, args: list[str]) -> tuple[str, ...]:
    if len(args) > MAX_ARGS:
        raise InvalidSpec(f"{what} has more than {MAX_ARGS} arguments")
    for arg in args:
        if "\0" in arg or "\n" in arg or len(arg) > 4096:
            raise InvalidSpec(f"{what}: an argument holds a NUL or a newline, or is too long")
    return tuple(args)


class QueueConfigIn(BaseModel):
    """How a queue's allocations are made and what their workers are (durations in seconds)."""

    model_config = ConfigDict(extra="forbid")

    backend: str = "slurm"
    time_limit: float = Field(gt=0, le=MAX_TIME_S, description="Each allocation's walltime.")
    backlog: int = Field(1, ge=1, le=1000, description="Most allocations waiting at once.")
    max_workers: int | None = Field(None, ge=1, le=1_000_000)
    workers_per_alloc: int = Field(1, ge=1, le=10_000)
    idle_timeout: float = Field(300.0, gt=0, le=MAX_TIME_S)
    slots: int | None = Field(None, ge=1, le=4096)
    labels: dict[str, str] = Field(default_factory=dict)
    cpus: float = Field(0.0, ge=0, le=MAX_CPU)
    memory_mb: int = Field(0, ge=0, le=MAX_MEMORY_MB)
    gpus: int = Field(0, ge=0, le=MAX_GPUS)
    worker_args: list[str] = Field(default_factory=list)
    worker_command: list[str] = Field(default_factory=list)
    master: str = Field("", max_length=1024, description="The address workers dial.")
    args: list[str] = Field(default_factory=list, description="Raw arguments of the backend.")
    stop_command: list[str] = Field(
        default_factory=list, description="The command backend's: cancels one (its id last)."
    )

    def to_config(self) -> QueueConfig:
        labels = check_env(self.labels, "labels") if self.labels else {}
        return QueueConfig(
            backend=self.backend,
            time_limit_s=self.time_limit,
            backlog=self.backlog,
            max_workers=self.max_workers,
            workers_per_alloc=self.workers_per_alloc,
            idle_timeout_s=self.idle_timeout,
            slots=self.slots,
            labels=labels,
            resources=Resources(self.cpus, self.memory_mb, self.gpus),
            worker_args=_args("worker_args", self.worker_args),
            worker_command=_args("worker_command", self.worker_command),
            master=self.master,
            args=_args("args", self.args),
            stop=_args("stop_command", self.stop_command),
        )


class AllocQueueIn(QueueConfigIn):
    name: str
    dry_run: bool = Field(True, description="Submit a held test allocation first.")


class DryRunIn(QueueConfigIn):
    pass


class DryRunOut(BaseModel):
    ok: bool
    message: str


class QueueConfigOut(BaseModel):
    backend: str
    time_limit: float
    worker_time_limit: float
    backlog: int
    max_workers: int | None
    workers_per_alloc: int
    idle_timeout: float
    slots: int | None
    labels: dict[str, str]
    cpus: float
    memory_mb: int
    gpus: int
    worker_args: list[str]
    worker_command: list[str]
    master: str
    args: list[str]
    stop_command: list[str]

    @classmethod
    def of(cls, c: QueueConfig) -> QueueConfigOut:
        return cls(
            backend=c.backend, time_limit=c.time_limit_s, worker_time_limit=c.worker_time_s,
            backlog=c.backlog, max_workers=c.max_workers, workers_per_alloc=c.workers_per_alloc,
            idle_timeout=c.idle_timeout_s, slots=c.slots, labels=dict(c.labels),
            cpus=c.resources.cpu, memory_mb=c.resources.memory_mb, gpus=c.resources.gpus,
            worker_args=list(c.worker_args), worker_command=list(c.worker_command),
            master=c.master, args=list(c.args), stop_command=list(c.stop),
        )  # fmt: skip


class AllocationOut(BaseModel):
    id: str
    queue: str
    state: str
    backend_id: str
    workers: int
    workers_online: int
    created_at: int
    started_at: int | None
    connected_at: int | None
    ended_at: int | None
    error: str | None

    @classmethod
    def of(cls, a: Allocation, online: int = 0) -> AllocationOut:
        return cls(
            id=a.id, queue=a.queue, state=a.state.value, backend_id=a.backend_id,
            workers=a.workers, workers_online=online, created_at=a.created_at,
            started_at=a.started_at, connected_at=a.connected_at, ended_at=a.ended_at,
            error=a.error,
        )  # fmt: skip


class AllocQueueOut(BaseModel):
    name: str
    state: str
    reason: str | None = Field(description="Why it is paused, or its last failure.")
    failures: int = Field(description="Failures in a row (it pauses at 3).")
    created_at: int
    next_at: int = Field(description="No allocation is submitted before this (a backoff), ms.")
    config: QueueConfigOut
    active: int = Field(description="Its allocations queued or running now.")
    allocations: list[AllocationOut] | None = None

    @classmethod
    def of(
        cls, q: AllocQueue, active: int, allocations: list[AllocationOut] | None = None
    ) -> AllocQueueOut:
        return cls(
            name=q.name, state=q.state.value, reason=q.reason, failures=q.failures,
            created_at=q.created_at, next_at=q.next_at, config=QueueConfigOut.of(q.config),
            active=active, allocations=allocations,
        )  # fmt: skip


class AllocQueueListOut(BaseModel):
    queues: list[AllocQueueOut]
