"""The master's use cases as the HTTP edge calls them: submit, list, cancel, drain, wait, the
quotas and keys. The other parts sit beside it, each handed what it uses (dispatch is
`Dispatcher`, workers joining, reporting and leaving `WorkerStreams`, trust in workers `Trust`,
retention `Retention`, what fits the queue `Admission`), wired in gridrun.master.core.wiring.

Knows nothing of HTTP or protobuf: the api edge translates into these verbs. Live state (open
sessions, waiters for a task's end) is memory; everything a user was told is in the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager

from gridrun.clock import Clock
from gridrun.dispatching import Quota
from gridrun.errors import NoWorkerMatches, WorkerNotConnected
from gridrun.master.core.admission import Admission
from gridrun.master.core.files import Files
from gridrun.master.core.ids import new_task_id, new_task_ids
from gridrun.master.core.pacing import Pacing
from gridrun.master.core.sealing import Sealer
from gridrun.master.core.sessions import (
    CancelCmd,
    DrainCmd,
    Sessions,
)
from gridrun.master.core.signals import Signals
from gridrun.master.core.worker_streams import WorkerStreams
from gridrun.model import (
    ACTIVE,
    Attempt,
    Sealed,
    Task,
    TaskSpec,
    TaskState,
    WorkerInfo,
    WorkerState,
    capacity_of,
)
from gridrun.resources import labels_match
from gridrun.spec import resolve_after
from gridrun.store import (
    NewTask,
    Notice,
    NoticeKind,
    Page,
    Store,
    TaskFilter,
    TaskOrder,
    TaskOutput,
)

log = logging.getLogger("gridrun.master")


class Service:
    """The use cases the edges call. Its collaborators are handed to it, made and wired in
    one place (gridrun.master.core.wiring)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        sessions: Sessions,
        signals: Signals,
        pacing: Pacing,
        admission: Admission,
        streams: WorkerStreams,
        sealer: Sealer,
        files: Files,
    ) -> None:
        self.files = files
        self.store = store
        self.clock = clock
        self.sessions = sessions
        self.signals = signals
        self.pacing = pacing
        self.admission = admission
        self.streams = streams
        self.sealer = sealer

    # ---- client use cases

    async def submit(self, specs: Sequence[TaskSpec]) -> list[tuple[Task, bool]]:
        """Store the tasks durably; return each with True if it is new, False if its
        idempotency key named an existing task (which is returned instead)."""
        await self.admission.check(specs)
        if any(s.inputs for s in specs):
            specs = await self.files.resolve(specs)  # their stored sizes, within --max-input
        ids = new_task_ids(len(specs))
        if any(s.after for s in specs):
            specs = resolve_after(specs, ids)  # names of batch members -> their ids
        proposed = [NewTask(id=i, spec=s) for i, s in zip(ids, specs, strict=True)]
        # Wake dispatch before the insert commits: add_tasks queues its write before it first
        # yields, so the pass's claim queues behind it, and SQLite runs that claim in the
        # transaction right after the insert, with no turn of the event loop between them
        # (created->assigned: ~1.3 ms -> ~0.1 ms at light load). A store with concurrent
        # writers (PostgreSQL) may not see the insert yet: the wake after it covers that.
        self.signals.wake()
        tasks = await self.store.tasks.add_tasks(proposed, self.clock.now_ms())
        self.signals.wake()
        added = [(t, t.id == p.id) for t, p in zip(tasks, proposed, strict=True)]
        self.signals.metrics.submitted.inc(sum(new for _, new in added))
        return added

    async def set_quota(self, quota: Quota) -> None:
        await self.store.dispatch.set_quota(quota)
        self.signals.wake()  # a limit raised lets tasks run now

    async def quotas(self) -> list[Quota]:
        return await self.store.dispatch.quotas()

    async def owners(self) -> list[tuple[str, str, int, int, int]]:
        """(owner, queue, queued, assigned, running) for every owner and queue with tasks
        (assigned: sent to a worker, not started yet)."""
        return await self.store.dispatch.owners()

    async def concurrency_keys(self, limit: int) -> list[tuple[str, str, int]]:
        return await self.store.dispatch.concurrency_keys(limit)

    async def set_grid_key(self, key: str, limit: int | None) -> None:
        """Declare, change or (None) remove a grid-wide concurrency key."""
        await self.store.dispatch.set_grid_key(key, limit)
        self.signals.wake()  # a limit raised or removed lets tasks run now

    def seal(self, env: Mapping[str, str]) -> Sealed:
        """A task's secret environment as stored (see Sealer)."""
        return self.sealer.seal(env)

    async def broadcast(self, spec: TaskSpec) -> tuple[str, list[Task]]:
        """A job: the same command once on every live worker that matches the spec's labels
        and selector and could hold what it asks (like Salt's cmd.run on a target)."""
        workers = [
            w
            for w in await self.workers()
            if w.state is WorkerState.ONLINE
            and not w.legacy
            and labels_match(spec.labels, w.labels, spec.selector)
            and spec.resources.shortfall(capacity_of(w)) is None
        ]
        if not workers:
            raise NoWorkerMatches("no live worker matches; nothing to run the job on")
        job = new_task_id()
        key = spec.idempotency_key
        specs = [
            dataclasses.replace(
                spec, worker=w.id, job=job, idempotency_key=f"{key}@{w.id}" if key else None
            )
            for w in workers
        ]
        return job, [task for task, _ in await self.submit(specs)]

    async def expired_count(self, job_id: str) -> int:
        """How many tasks of this job retention has deleted."""
        return await self.store.retention.expired_count("job", job_id)

    async def resolve(self, given: str) -> str:
        """The whole id of the task a short id (a unique prefix or tail) names."""
        return await self.store.tasks.resolve_id(given)

    async def get(self, task_id: str) -> Task:
        return await self.store.tasks.get_task(task_id)

    async def list_tasks(
        self, flt: TaskFilter, limit: int, before: int | None, order: TaskOrder = "created"
    ) -> Page:
        return await self.store.tasks.list_tasks(flt, limit, before, order)

    async def attempts(self, task_id: str) -> list[Attempt]:
        return await self.store.tasks.get_attempts(task_id)

    async def output(self, task_id: str) -> TaskOutput:
        return await self.store.tasks.get_output(task_id)

    async def workers(self) -> list[WorkerInfo]:
        """Workers as stored, as this master sees them (see Pacing.as_seen)."""
        return self.pacing.as_seen(await self.store.workers.list_workers())

    def connected(self) -> int:
        """How many workers hold a stream to this master."""
        return len(self.sessions)

    @property
    def stopping(self) -> asyncio.Event:
        """Set when the master shuts down: followers and event streams end."""
        return self.signals.stopping

    async def count_by_state(self) -> dict[TaskState, int]:
        return await self.store.tasks.count_by_state()

    async def ping(self) -> None:
        await self.store.ping()

    async def drain(self, worker_id: str) -> WorkerInfo:
        """Ask a connected worker to finish its tasks, take nothing new, and exit."""
        session = self.sessions.get(worker_id)
        if session is None or session.closed:
            return await self._drain_elsewhere(worker_id)
        if session.legacy:
            raise WorkerNotConnected("a legacy worker cannot be drained; stop it instead")
        session.send(DrainCmd("drain requested"))
        await self.streams.draining(session, "drain requested")
        return session.info(WorkerState.DRAINING, last_seen=self.clock.now_ms())

    async def _drain_elsewhere(self, worker_id: str) -> WorkerInfo:
        """A worker connected to another master on this database is drained by that master."""
        _, master = await self.store.workers.worker_master(worker_id, self.clock.now_ms())
        if master in (None, self.store.origin):
            raise WorkerNotConnected(f"worker {worker_id} is not connected; nothing to drain")
        await self.store.notify(Notice(self.store.origin, NoticeKind.DRAIN, worker_id))
        worker = next(w for w in await self.store.workers.list_workers() if w.id == worker_id)
        return dataclasses.replace(worker, state=WorkerState.DRAINING)

    async def cancel(self, task_id: str) -> Task:
        task = await self.store.tasks.request_cancel(task_id, self.clock.now_ms())
        if task.state in ACTIVE:
            session = self.sessions.get(task.worker_id)
            if session is not None:
                session.send(CancelCmd(task.ref, "cancelled by request"))
            # a disconnected worker is told when it reconnects (see hello)
        self.signals.settled([task])
        self.signals.wake()  # what it held back (a slot, a place in line) is free
        return task

    async def wait(self, task_id: str, timeout_s: float) -> Task:
        """Return the task once it is terminal, or as it is after `timeout_s`."""
        return await self.signals.watchers.wait(
            task_id, timeout_s, lambda: self.store.tasks.get_task(task_id)
        )

    def watch(self, task_id: str) -> AbstractContextManager[asyncio.Event]:
        """An event set whenever the task changes while the block runs (see Watchers)."""
        return self.signals.watchers.watch(task_id)

    # ---- what other masters on the same database say (see gridrun.master.core.peers)

    async def cancel_here(self, task_id: str) -> None:
        """Cancel was requested on another master: stop the attempt if our worker runs it."""
        task = await self.store.tasks.get_task(task_id)
        session = self.sessions.get(task.worker_id)
        if task.state in ACTIVE and session is not None and not session.closed:
            session.send(CancelCmd(task.ref, "cancelled by request"))
