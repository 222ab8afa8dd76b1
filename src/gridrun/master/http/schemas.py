"""What the HTTP API answers (pydantic models), made from the domain (`TaskOut.of`, ...). What
it takes is `requests`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from gridrun.model import (
    Attempt,
    Placement,
    Schedule,
    Task,
    TaskState,
    Usage,
    WorkerInfo,
    WorkerState,
)


def iso(ms: int | None) -> datetime | None:
    """A stored time as a date; None for none, or for one no date can hold (a record stored
    before reports were checked: reading a task must never fail)."""
    if ms is None:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, ValueError, OSError):
        return None


class AttemptOut(BaseModel):
    attempt: int
    worker_id: str
    state: TaskState
    assigned_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    signal: int | None
    error: str | None
    cpu_s: float | None = Field(None, description="CPU time used (user + system), if measured.")
    peak_memory_bytes: int | None = Field(None, description="Peak memory, if measured.")
    io_read_bytes: int | None = Field(None, description="Bytes read from disks, if measured.")
    io_write_bytes: int | None = Field(None, description="Bytes written to disks, if measured.")

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptOut:
        used = attempt.usage or Usage()
        assigned = iso(attempt.assigned_at)
        assert assigned is not None
        return cls(
            attempt=attempt.attempt,
            worker_id=attempt.worker_id,
            state=attempt.state,
            assigned_at=assigned,
            started_at=iso(attempt.started_at),
            finished_at=iso(attempt.finished_at),
            exit_code=attempt.exit_code,
            signal=attempt.signal,
            error=attempt.error,
            cpu_s=used.cpu_s,
            peak_memory_bytes=used.peak_memory_bytes,
            io_read_bytes=used.io_read_bytes,
            io_write_bytes=used.io_write_bytes,
        )


class TaskOut(BaseModel):
    id: str
    name: str | None
    state: TaskState
    cmd: str | None
    argv: list[str]
    shell: bool
    env: dict[str, str]
    secret_env: list[str] = Field(description="The names of its secret variables (never values).")
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
    max_attempts: int
    queue_timeout_s: float | None
    idempotency_key: str | None
    submitted_by: str | None = Field(
        description="The name of the token that submitted it ('anonymous' without auth)."
    )
    owner: str = Field(description="Whose it is for fair share and quotas: submitted_by.")
    queue: str
    concurrency_key: str | None
    concurrency_limit: int | None
    retain_s: float | None = Field(description="Its own retention after it ends, if any.")
    stdin_bytes: int = Field(0, description="The size of its stdin (0: none; never shown).")
    script_bytes: int = Field(0, description="The size of the script it runs (0: none).")
    inputs: list[dict[str, str | int]] = Field(
        default_factory=list,
        description="Its input files: name, sha256, size, mode (written into each attempt's"
        " working directory).",
    )
    collect: list[str] = Field(
        default_factory=list, description="Globs of the files collected after each attempt."
    )
    retry_at: datetime | None = Field(description="A retry waits in the queue until then.")
    on: str | None = Field(description="Its selector terms beyond `labels`.")
    cpu: float
    memory_mb: int
    gpus: int
    after: list[str] = Field(description="The tasks it runs after.")
    job: str | None = Field(description="The job it belongs to (an array, a batch, a broadcast).")
    job_index: int | None = Field(None, description="Its index in its job.")
    task_class: str | None
    placement: Placement
    pinned_worker: str | None = Field(description="The only worker it may run on (a job's).")
    unschedulable: str | None = Field(
        description="While queued: why no live worker could ever take it as it asks."
    )
    cpu_s: float | None = Field(
        None, description="CPU time its final attempt used, where its worker measured it."
    )
    peak_memory_bytes: int | None = Field(
        None, description="Peak memory of its final attempt, where its worker measured it."
    )
    attempts: list[AttemptOut] | None = Field(
        None, description="Every attempt, oldest first (only on GET /v1/tasks/{id})."
    )

    @classmethod
    def of(cls, task: Task, attempts: list[Attempt] | None = None) -> TaskOut:
        """From a stored task. Keyword construction: pydantic validates it in its Rust core, which
        is about 2.5x faster than `model_construct`'s Python loop over the fields (a batch answer
        holds up to 10,000 of them)."""
        spec = task.spec
        created = iso(task.created_at)
        assert created is not None
        return cls(
            id=task.id,
            name=spec.name,
            state=task.state,
            cmd=spec.cmd,
            argv=list(spec.argv),
            shell=spec.shell,
            env=dict(spec.env),
            secret_env=list(spec.secrets.names) if spec.secrets else [],
            cwd=spec.cwd,
            timeout_s=spec.timeout_s,
            priority=spec.priority,
            labels=dict(spec.labels),
            attempt=task.attempt,
            worker_id=task.worker_id,
            cancel_requested=task.cancel_requested,
            created_at=created,
            assigned_at=iso(task.assigned_at),
            started_at=iso(task.started_at),
            finished_at=iso(task.finished_at),
            exit_code=task.exit_code,
            signal=task.signal,
            error=task.error,
            max_attempts=spec.retry.max_attempts,
            queue_timeout_s=spec.queue_timeout_s,
            idempotency_key=spec.idempotency_key,
            submitted_by=spec.submitted_by,
            owner=spec.owner,
            queue=spec.queue,
            concurrency_key=spec.concurrency.key if spec.concurrency else None,
            concurrency_limit=spec.concurrency.limit if spec.concurrency else None,
            retain_s=spec.retain_s,
            stdin_bytes=len(spec.stdin) if spec.stdin is not None else 0,
            script_bytes=len(spec.script) if spec.script is not None else 0,
            inputs=[
                {"name": f.name, "sha256": f.digest, "size": f.size, "mode": f.mode}
                for f in spec.inputs
            ],
            collect=list(spec.collect),
            retry_at=iso(task.not_before) if task.state is TaskState.QUEUED else None,
            on=", ".join(map(str, spec.selector)) or None,
            cpu=spec.resources.cpu,
            memory_mb=spec.resources.memory_mb,
            gpus=spec.resources.gpus,
            after=list(spec.after),
            job=spec.job,
            job_index=spec.job_index,
            pinned_worker=spec.worker,
            task_class=spec.task_class,
            placement=spec.placement,
            unschedulable=task.unschedulable if task.state is TaskState.QUEUED else None,
            attempts=[AttemptOut.of(a) for a in attempts] if attempts is not None else None,
            cpu_s=task.usage.cpu_s if task.usage else None,
            peak_memory_bytes=task.usage.peak_memory_bytes if task.usage else None,
        )


class ScheduleOut(BaseModel):
    id: str
    name: str | None
    cron: str
    cmd: str | None
    argv: list[str]
    shell: bool
    secret_env: list[str] = Field(description="The names of its secret variables (never values).")
    on: str | None
    labels: dict[str, str]
    created_at: datetime
    next_at: datetime = Field(description="The next slot it fires for.")
    last_fired: datetime | None = Field(description="The slot it last fired for.")
    last_task: str | None = Field(description="The task that slot made.")
    over_quota: int = Field(
        0, description="Slots that made no task: its owner or queue was at a queued quota."
    )
    submitted_by: str | None

    @classmethod
    def of(cls, schedule: Schedule) -> ScheduleOut:
        spec = schedule.spec
        created, next_at = iso(schedule.created_at), iso(schedule.next_at)
        assert created is not None
        assert next_at is not None
        return cls(
            id=schedule.id,
            name=schedule.name,
            cron=schedule.cron,
            cmd=spec.cmd,
            argv=list(spec.argv),
            shell=spec.shell,
            secret_env=list(spec.secrets.names) if spec.secrets else [],
            on=", ".join(map(str, spec.selector)) or None,
            labels=dict(spec.labels),
            created_at=created,
            next_at=next_at,
            last_fired=iso(schedule.last_fired),
            last_task=schedule.last_task,
            over_quota=schedule.over_quota,
            submitted_by=spec.submitted_by,
        )


class ScheduleListOut(BaseModel):
    schedules: list[ScheduleOut]


class BatchOut(BaseModel):
    tasks: list[TaskOut]


class IdsOut(BaseModel):
    """The answer to a submission sent with `Prefer: return=minimal`."""

    ids: list[str] = Field(
        description="The tasks' ids, in the order submitted (where an idempotency_key was"
        " taken, the id of the task that holds it)."
    )


class TaskListOut(BaseModel):
    tasks: list[TaskOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next (older) page; null on the last page."
    )


class WorkerOut(BaseModel):
    id: str
    hostname: str
    labels: dict[str, str]
    slots: int
    running: int = Field(description="Its tasks that have started.")
    assigned: int = Field(
        0,
        description="Its tasks not started yet: sent and on their way, or held (prefetched)"
        " until a slot frees.",
    )
    state: WorkerState
    version: str
    legacy: bool
    connected_at: datetime | None
    last_seen: datetime | None
    resources: dict[str, int] = Field(
        default_factory=dict, description="What the worker said it has: cpus, memory_mb, gpus."
    )
    quarantined: str | None = Field(
        None, description="Why it gets no new work for now (it missed deadlines)."
    )
    containment: str = Field(
        "",
        description='How it contains its tasks: "cgroup (...)" (each attempt a cgroup: limits,'
        ' usage, nothing escapes), "subreaper" (escapes caught, no limits) or "none".',
    )

    @classmethod
    def of(cls, worker: WorkerInfo, quarantined: str | None = None) -> WorkerOut:
        return cls(
            id=worker.id,
            hostname=worker.hostname,
            labels=dict(worker.labels),
            slots=worker.slots,
            running=worker.running,
            assigned=worker.assigned,
            state=worker.state,
            version=worker.version,
            legacy=worker.legacy,
            connected_at=iso(worker.connected_at),
            last_seen=iso(worker.last_seen),
            resources=dict(worker.resources),
            quarantined=quarantined,
            containment=worker.containment,
        )


class WorkerListOut(BaseModel):
    workers: list[WorkerOut]


class StorageOut(BaseModel):
    db_bytes: int | None = Field(description="The database's size (None: not known here).")
    output_bytes: int = Field(description="Tasks' output kept.")
    file_bytes: int = Field(0, description="Files collected from tasks, kept.")
    input_bytes: int = Field(
        0, description="Input files held (each once, however many tasks use it)."
    )
    tasks_kept: int
    oldest_task_at: datetime | None = Field(description="When the oldest task kept was made.")
    disk_used: float | None = Field(description="How full the database's disk is (SQLite).")
    next_retention_in_s: float | None = Field(description="Seconds to the next retention pass.")
    retain_s: float
    retain_failed_s: float
    output_budget: int | None
    schedule_slots_skipped: int = Field(description="Schedule slots passed over, since start.")


class GcOut(BaseModel):
    deleted: int = Field(description="Tasks deleted (with dry_run: that would be).")
    dry_run: bool


class QuotaOut(BaseModel):
    scope: Literal["owner", "queue"]
    name: str
    max_queued: int | None
    max_running: int | None


class QuotaListOut(BaseModel):
    quotas: list[QuotaOut]


class ConcurrencyKeyOut(BaseModel):
    key: str
    owner: str | None = Field(description="Whose key it is; null: grid-wide (an admin's).")
    limit: int


class ConcurrencyKeyListOut(BaseModel):
    keys: list[ConcurrencyKeyOut]


class OwnerOut(BaseModel):
    owner: str
    queue: str
    queued: int
    assigned: int = Field(0, description="Sent to a worker, not started yet.")
    running: int = Field(description="Started (assigned ones are not counted here).")


class OwnerListOut(BaseModel):
    owners: list[OwnerOut] = Field(description="Tasks queued and running per owner and queue.")


class LegacyTaskOut(BaseModel):
    id: str
    state: TaskState


class StatsOut(BaseModel):
    tasks: dict[TaskState, int]
    workers: dict[WorkerState, int]
    stale_reports_dropped: int = Field(
        description="Reports from workers for attempts they no longer hold, since start."
    )


class SampleOut(BaseModel):
    at: int = Field(description="When it was taken, ms since the epoch (UTC).")
    queued: int
    assigned: int = Field(description="Sent to a worker, not started yet.")
    running: int
    slots: int = Field(description="Slots of the workers online or draining.")
    slots_used: int
    finished: int = Field(description="Tasks that ended in the step before it (this master's).")
    failed: int = Field(description="Of them, ended failed, timed out, lost or rejected.")


class Distribution(BaseModel):
    bounds_s: list[float] = Field(description="Upper bounds of the buckets, seconds.")
    counts: list[int] = Field(description="Tasks per bucket; one more than bounds: above them.")


class HistoryOut(BaseModel):
    step_s: float = Field(description="Seconds between samples.")
    samples: list[SampleOut] = Field(
        description="Oldest first; the last one is now (its step not yet closed)."
    )
    latency: Distribution = Field(
        description="From submission to the start of the attempt that ended the task, of the"
        " tasks that ended within the samples."
    )
    duration: Distribution = Field(description="How long their final attempt ran.")


class MeOut(BaseModel):
    name: str = Field(description="The token's name (`anonymous` when the master has no tokens).")
    role: str
    permissions: list[str] = Field(description="What this token may do.")


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
