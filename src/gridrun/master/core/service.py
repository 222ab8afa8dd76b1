"""The master's use cases: submit, cancel, drain (parts it owns: dispatch is `Dispatcher`,
workers joining, reporting and leaving `WorkerStreams`, trust in workers `Trust`, waiting and
following `Watchers`, retention `Retention`).

The only caller of the store. Knows nothing of HTTP or protobuf: the api and rpc edges translate
into these verbs. Live state (open sessions, waiters for a task's end) is memory; everything a
user was told is in the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from gridrun.clock import Clock
from gridrun.dispatching import Quota
from gridrun.errors import NoWorkerMatches, TooManyQueued, WorkerNotConnected
from gridrun.master.core.dispatcher import Dispatcher
from gridrun.master.core.metrics import Metrics
from gridrun.master.core.retention import Retention
from gridrun.master.core.sealing import Sealer
from gridrun.master.core.sessions import (
    CancelCmd,
    DrainCmd,
    Sessions,
    WelcomeCmd,
    WorkerSession,
)
from gridrun.master.core.trust import Trust
from gridrun.master.core.watchers import Watchers
from gridrun.master.core.worker_streams import WorkerStreams
from gridrun.model import (
    ACTIVE,
    Attempt,
    Task,
    TaskSpec,
    TaskState,
    WorkerInfo,
    WorkerState,
    capacity_of,
)
from gridrun.resources import labels_match
from gridrun.spec import resolve_after
from gridrun.store import NewTask, Notice, NoticeKind, Page, Store, TaskFilter, TaskOutput

log = logging.getLogger("gridrun.master")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    heartbeat_interval_s: float = 2.0
    liveness_timeout_s: float = 10.0
    # A large fleet beats less often (as Nomad paces its clients): each worker is given an
    # interval that keeps the fleet under this many heartbeats a second, never shorter than
    # heartbeat_interval_s, and its liveness timeout grows in proportion.
    max_heartbeats_per_s: float = 100.0
    output_cap: int = 1024 * 1024
    kill_grace_s: float = 5.0
    # a distrusted worker: deadlines on the master's own clock, then no new work for a while
    start_deadline_s: float = 60.0  # from an Assign sent to its Started
    quarantine_after: int = 3  # deadlines missed before a worker is quarantined
    quarantine_s: float = 3600.0
    forget_workers_after_s: float = 7 * 24 * 3600.0  # offline this long: no longer listed
    forget_unused_workers_after_s: float = 600.0  # likewise, an id that never ran anything
    max_workers_per_token: int = 10_000  # worker ids one join token may have bound at once
    # a shared grid (see gridrun.master.core.fairness): owner -> weight (default 1), and the most
    # tasks the grid may hold queued (beyond it a submission is answered 429)
    shares: Mapping[str, float] = field(default_factory=dict)
    max_queued: int = 10_000_000
    # retention: ended tasks are deleted this long after they end (failures: retain_failed_s)
    retain_s: float = 14 * 86400.0
    retain_failed_s: float | None = None  # None: as retain_s
    output_budget: int | None = None  # bytes of output kept grid-wide; beyond, the oldest go
    retain_queues: Mapping[str, float] = field(default_factory=dict)  # queue -> its retention


def new_task_ids(count: int) -> list[str]:
    """Ids that sort by creation time, as UUIDv7 does: 12 hex digits of Unix time in ms, then
    48 random bits. New tasks land at the end of the id index, not all over it; with random
    ids, each commit of a large batch rewrote pages across the whole index once the table
    outgrew the cache (a commit of 1,000 took 4x as long at 200,000 tasks)."""
    prefix = f"{time.time_ns() // 1_000_000:012x}"
    random = secrets.token_bytes(6 * count).hex()
    return [prefix + random[i : i + 12] for i in range(0, 12 * count, 12)]


def new_task_id() -> str:
    (task_id,) = new_task_ids(1)
    return task_id


class Service:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: ServiceConfig,
        sessions: Sessions,
        metrics: Metrics | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.sessions = sessions
        self.metrics = metrics or Metrics()
        self.sealer = sealer or Sealer.ephemeral()
        self.trust = Trust(self)
        self.dispatcher = Dispatcher(self)
        self.dispatch_wanted = asyncio.Event()
        self.stopping = asyncio.Event()  # set when the master shuts down: followers end
        self.watchers = Watchers()
        self.retention = Retention(self)
        self.streams = WorkerStreams(self)  # hello, reports, disconnects

    # ---- client use cases

    async def submit(self, specs: Sequence[TaskSpec]) -> list[tuple[Task, bool]]:
        """Store the tasks durably; return each with True if it is new, False if its
        idempotency key named an existing task (which is returned instead)."""
        await self._check_room(specs)
        ids = new_task_ids(len(specs))
        if any(s.after for s in specs):
            specs = resolve_after(specs, ids)  # names of batch members -> their ids
        proposed = [NewTask(id=i, spec=s) for i, s in zip(ids, specs, strict=True)]
        # Wake dispatch before the insert commits: add_tasks queues its write before it first
        # yields, so the pass's claim queues behind it, and SQLite runs that claim in the
        # transaction right after the insert, with no turn of the event loop between them
        # (created->assigned: ~1.3 ms -> ~0.1 ms at light load). A store with concurrent
        # writers (PostgreSQL) may not see the insert yet: the wake after it covers that.
        self.dispatch_wanted.set()
        tasks = await self.store.add_tasks(proposed, self.clock.now_ms())
        self.dispatch_wanted.set()
        added = [(t, t.id == p.id) for t, p in zip(tasks, proposed, strict=True)]
        self.metrics.submitted.inc(sum(new for _, new in added))
        return added

    async def set_quota(self, quota: Quota) -> None:
        await self.store.set_quota(quota)
        self.dispatch_wanted.set()  # a limit raised lets tasks run now

    async def _check_room(self, specs: Sequence[TaskSpec]) -> None:
        """Refuse (429) a batch that would take the grid, an owner or a queue past what it
        may hold queued. A soft limit: batches submitted at the same moment may each pass."""
        for why in await self.room(specs):
            if why is not None:
                raise TooManyQueued(f"{why}: submit again once some have run")

    async def room(self, specs: Sequence[TaskSpec]) -> list[str | None]:
        """For each spec in turn, None if it fits in what the grid, its owner and its queue
        may hold queued (counting the specs before it), else why not. What makes tasks
        without a client asking (a schedule's slots) asks here, as submit does."""
        counts = await self.store.count_by_state()
        queued = counts.get(TaskState.QUEUED, 0)
        limits = {
            (q.scope, q.name): q.max_queued
            for q in await self.store.quotas()
            if q.max_queued is not None
        }
        if not limits and queued + len(specs) <= self.config.max_queued:
            return [None] * len(specs)  # (the common case: no look at each of 10,000 specs)
        held: dict[tuple[str, str], int] = {}  # as stored, when first needed
        adding: Counter[tuple[str, str]] = Counter()
        answers: list[str | None] = []
        for spec in specs:
            why = None
            if queued + 1 > self.config.max_queued:
                why = (
                    f"the grid holds {queued:,} queued tasks, its limit is"
                    f" {self.config.max_queued:,} (master --max-queued)"
                )
            scopes = [("owner", spec.owner), ("queue", spec.queue)]
            for scope in scopes:
                limit = limits.get(scope)
                if limit is None or why is not None:
                    continue
                if scope not in held:
                    held[scope] = await self.store.queued_count(*scope, limit + 1)
                if held[scope] + adding[scope] + 1 > limit:
                    why = (
                        f"{scope[0]} {scope[1]} has {held[scope]:,} tasks queued; its quota is"
                        f" {limit:,} (gridrun quota show)"
                    )
            if why is None:
                queued += 1
                adding.update(scopes)
            answers.append(why)
        return answers

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

    async def get(self, task_id: str) -> Task:
        return await self.store.get_task(task_id)

    async def list_tasks(self, flt: TaskFilter, limit: int, before: int | None) -> Page:
        return await self.store.list_tasks(flt, limit, before)

    async def attempts(self, task_id: str) -> list[Attempt]:
        return await self.store.get_attempts(task_id)

    async def output(self, task_id: str) -> TaskOutput:
        return await self.store.get_output(task_id)

    async def workers(self) -> list[WorkerInfo]:
        """Workers as stored, with live last-seen times for the ones connected here; one whose
        lease ran out is offline, whatever its row says (its master may have died)."""
        workers = await self.store.list_workers()
        now_ms, now = self.clock.now_ms(), self.clock.monotonic()
        for i, worker in enumerate(workers):
            session = self.sessions.get(worker.id)
            if session is not None and not session.closed:
                seen = now_ms - round((now - session.last_seen) * 1000)
                workers[i] = dataclasses.replace(worker, last_seen=seen)
            elif worker.state_at(now_ms) is not worker.state:
                workers[i] = dataclasses.replace(worker, state=worker.state_at(now_ms))
        return workers

    async def count_by_state(self) -> dict[TaskState, int]:
        return await self.store.count_by_state()

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
        await self.draining(session, "drain requested")
        return session.info(WorkerState.DRAINING, last_seen=self.clock.now_ms())

    async def _drain_elsewhere(self, worker_id: str) -> WorkerInfo:
        """A worker connected to another master on this database is drained by that master."""
        _, master = await self.store.worker_master(worker_id, self.clock.now_ms())
        if master in (None, self.store.origin):
            raise WorkerNotConnected(f"worker {worker_id} is not connected; nothing to drain")
        await self.store.notify(Notice(self.store.origin, NoticeKind.DRAIN, worker_id))
        worker = next(w for w in await self.store.list_workers() if w.id == worker_id)
        return dataclasses.replace(worker, state=WorkerState.DRAINING)

    async def draining(self, session: WorkerSession, reason: str) -> None:
        """From now on nothing is placed on this worker; its running tasks finish."""
        session.draining = True
        log.info("worker %s is draining: %s", session.worker_id, reason)
        now = self.clock.now_ms()
        await self.store.upsert_worker(
            session.info(WorkerState.DRAINING, now), self.lease_until(now, session)
        )

    async def cancel(self, task_id: str) -> Task:
        task = await self.store.request_cancel(task_id, self.clock.now_ms())
        if task.state in ACTIVE:
            session = self.sessions.get(task.worker_id)
            if session is not None:
                session.send(CancelCmd(task.ref, "cancelled by request"))
            # a disconnected worker is told when it reconnects (see hello)
        self.settled([task])
        self.dispatch_wanted.set()  # what it held back (a slot, a place in line) is free
        return task

    async def wait(self, task_id: str, timeout_s: float) -> Task:
        """Return the task once it is terminal, or as it is after `timeout_s`."""
        return await self.watchers.wait(task_id, timeout_s, lambda: self.store.get_task(task_id))

    def watch(self, task_id: str) -> AbstractContextManager[asyncio.Event]:
        """An event set whenever the task changes while the block runs (see Watchers)."""
        return self.watchers.watch(task_id)

    # ---- what other masters on the same database say (see gridrun.master.core.peers)

    def changed_elsewhere(self, task_id: str) -> None:
        """Another master changed this task: followers and waiters here read it again."""
        self.watchers.changed(task_id)

    def resync(self) -> None:
        """Notices may have been missed (the store connection was lost): look at everything."""
        self.dispatch_wanted.set()
        for task_id in self.watchers.watched():
            self.watchers.changed(task_id)

    async def cancel_here(self, task_id: str) -> None:
        """Cancel was requested on another master: stop the attempt if our worker runs it."""
        task = await self.store.get_task(task_id)
        session = self.sessions.get(task.worker_id)
        if task.state in ACTIVE and session is not None and not session.closed:
            session.send(CancelCmd(task.ref, "cancelled by request"))

    def settled(self, tasks: Iterable[Task]) -> None:
        for task in tasks:
            self.watchers.touched(task.id)
            if task.terminal:
                self.metrics.settled(task, self.clock.now_ms())
                self.watchers.ended(task.id)

    # ---- worker pacing and leases

    def pace(self, fleet: int) -> tuple[float, float]:
        """(heartbeat interval, liveness timeout) for a worker joining a fleet of this size."""
        config = self.config
        interval = max(config.heartbeat_interval_s, fleet / config.max_heartbeats_per_s)
        return interval, config.liveness_timeout_s * interval / config.heartbeat_interval_s

    def repace(self) -> None:
        """The fleet grew: ask workers that beat faster than its pace now to slow down (never
        to speed up: while a worker is connected its timeout only grows)."""
        live = [s for s in self.sessions if not s.closed and not s.legacy]
        interval, timeout = self.pace(len(live))
        for session in live:
            if session.heartbeat_s < interval * 0.8:
                session.heartbeat_s, session.timeout_s = interval, timeout
                session.send(WelcomeCmd(session.worker_id, interval, self.config.output_cap))

    def lease_until(self, from_ms: int, session: WorkerSession) -> int:
        """The end of the lease to write for this worker, from `from_ms`; remembered on the
        session so that liveness renews it only once half a heartbeat of it is spent."""
        session.lease_until = from_ms + round(session.timeout_s * 1000)
        return session.lease_until

    def epoch_ms(self, monotonic: float) -> int:
        return self.clock.now_ms() - round((self.clock.monotonic() - monotonic) * 1000)
