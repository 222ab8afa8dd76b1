"""Jobs as the use cases see them: submit an array (or a --file batch) as one durable
submission, read and list jobs, cancel a job's tasks (or any filter's) in one step, and run
a job's unsuccessful tasks again within the quotas."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

from gridrun.arrays import ArraySpec, expand
from gridrun.clock import Clock
from gridrun.master.core.admission import Admission
from gridrun.master.core.ids import new_task_id
from gridrun.master.core.service import Service
from gridrun.master.core.sessions import CancelCmd, Sessions
from gridrun.master.core.signals import Signals
from gridrun.model import ACTIVE, Task, TaskSpec, TaskState
from gridrun.store import JobSummary, Store, TaskFilter

# what `retry` runs again unless told otherwise: what did not succeed and may, run again
RETRIED = (TaskState.FAILED, TaskState.TIMED_OUT, TaskState.LOST, TaskState.CANCELLED)


class Jobs:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        sessions: Sessions,
        signals: Signals,
        admission: Admission,
        service: Service,
    ) -> None:
        self.store, self.clock, self.sessions, self.signals = store, clock, sessions, signals
        self.admission = admission
        self.service = service  # (an array is submitted as any batch is)

    async def submit_array(
        self,
        base: TaskSpec,
        array: ArraySpec | None,
        items: Sequence[str] | None = None,
        commands: Sequence[TaskSpec] | None = None,
    ) -> tuple[str, int]:
        """Store the job's tasks in one transaction (all or none); its id and size. With an
        idempotency key, submitting the same array again returns the job first made."""
        job = new_task_id()
        specs = expand(base, job, array, items, commands)
        added = await self.service.submit(specs)
        return added[0][0].spec.job or job, len(added)

    async def resolve(self, given: str) -> str:
        """The whole id of the job a short id (a unique prefix or tail) names."""
        return await self.store.jobs.resolve_id(given)

    async def summary(self, job_id: str, unsuccessful: int = 1000) -> JobSummary:
        return await self.store.jobs.summary(job_id, unsuccessful)

    async def cells(self, job_id: str, limit: int) -> list[tuple[str, int | None, TaskState]]:
        return await self.store.jobs.cells(job_id, limit)

    async def list_jobs(self, limit: int, owner: str | None = None) -> list[JobSummary]:
        return await self.store.jobs.list_jobs(limit, owner)

    async def cancel(self, flt: TaskFilter) -> list[Task]:
        """Cancel what the filter matches and has not ended; the tasks as they were."""
        now = self.clock.now_ms()
        found = await self.store.jobs.cancel(flt, now)
        ended = []
        for task in found:
            if task.state in ACTIVE:
                session = self.sessions.get(task.worker_id)
                if session is not None:  # (a worker of another master: its notice)
                    session.send(CancelCmd(task.ref, "cancelled by request"))
            else:
                ended.append(dataclasses.replace(task, state=TaskState.CANCELLED, finished_at=now))
        self.signals.settled(ended)
        self.signals.wake()
        return found

    async def rerun(
        self, job_id: str, states: Collection[TaskState] = RETRIED
    ) -> tuple[JobSummary, list[Task]]:
        """Queue the job's ended tasks in these states again, each for a new attempt, if
        the grid, their owner and queue may hold that many more queued (else 429)."""
        before = await self.store.jobs.summary(job_id, 0)
        many = sum(before.counts.get(s, 0) for s in states)
        await self.admission.check([before.first.spec] * many)
        done = await self.store.jobs.rerun(job_id, states, self.clock.now_ms())
        self.signals.wake()
        return done
