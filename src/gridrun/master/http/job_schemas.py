"""What the API answers of jobs: a job as a whole (counts, progress, what did not succeed),
a list of them, what an array's submission made, and what a bulk cancel or a retry did."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from gridrun.master.http.schemas import TaskOut, iso
from gridrun.model import TERMINAL, Task, TaskState
from gridrun.store import JobSummary


class JobTaskOut(BaseModel):
    """One task of a job, in short."""

    id: str
    index: int | None = Field(description="Its index in the job (an array's; a --file's line).")
    state: TaskState
    exit_code: int | None
    signal: int | None
    error: str | None
    worker_id: str | None

    @classmethod
    def of(cls, task: Task) -> JobTaskOut:
        return cls(
            id=task.id,
            index=task.spec.job_index,
            state=task.state,
            exit_code=task.exit_code,
            signal=task.signal,
            error=task.error,
            worker_id=task.worker_id,
        )


class JobOut(BaseModel):
    """A job: an array, a --file batch (kind `array`), or a broadcast (the same command once
    on each matching live worker)."""

    id: str
    kind: Literal["array", "broadcast"] = "broadcast"
    name: str | None = None
    owner: str | None = None
    command: str = Field("", description="What its first task runs (an array's template).")
    created_at: datetime | None = None
    size: int = Field(0, description="Its tasks, as stored now.")
    ended: int = Field(0, description="Of them, ended (in a terminal state).")
    succeeded: int = 0
    max_running: int | None = Field(None, description="An array's %N: at most this many at once.")
    counts: dict[TaskState, int] = Field(default_factory=dict)
    unsuccessful: list[JobTaskOut] = Field(
        default_factory=list,
        description="Its ended tasks that did not succeed, by index (the first 1,000).",
    )
    tasks: list[TaskOut] = Field(
        default_factory=list,
        description="Its tasks, oldest first (the first 1,000; none with ?tasks=false).",
    )
    expired: int = Field(0, description="Its tasks deleted by retention since (not listed).")

    @classmethod
    def of(cls, job: JobSummary, tasks: list[TaskOut], expired: int = 0) -> JobOut:
        first = job.first.spec
        concurrency = first.concurrency
        own_cap = concurrency is not None and concurrency.key == f"job:{job.id}"
        return cls(
            id=job.id,
            kind="broadcast" if first.worker is not None else "array",
            name=first.name,
            owner=first.owner,
            command=first.cmd if first.cmd is not None else " ".join(first.argv),
            created_at=iso(job.first.created_at),
            size=job.size,
            ended=sum(n for state, n in job.counts.items() if state in TERMINAL),
            succeeded=job.counts.get(TaskState.SUCCEEDED, 0),
            max_running=concurrency.limit if own_cap and concurrency else None,
            counts={state: job.counts.get(state, 0) for state in TaskState},
            unsuccessful=[JobTaskOut.of(t) for t in job.unsuccessful],
            tasks=tasks,
            expired=expired,
        )


class CellsOut(BaseModel):
    """One entry per task, by index (what the dashboard's job page draws a cell each)."""

    ids: list[str]
    indexes: list[int | None]
    states: list[TaskState]
    more: int = Field(description="Tasks of the job past these (not listed).")


class JobListOut(BaseModel):
    jobs: list[JobOut]


class ArrayOut(BaseModel):
    id: str = Field(description="The job's id.")
    size: int = Field(description="Its tasks.")


class CancelledOut(BaseModel):
    cancelled: int = Field(description="Waiting or queued tasks cancelled now.")
    stopping: int = Field(description="Assigned or running tasks their workers are told to stop.")


class RetriedOut(BaseModel):
    retried: int = Field(description="Tasks queued again, each for a new attempt.")
