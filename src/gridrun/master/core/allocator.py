"""Allocation queues at work: workers brought up through the cluster's scheduler as queued
work needs them, within the queue's caps, and let go.

Every `alloc_interval_s` each master reads the queues (for the reasons tasks give) and the
running allocations' credentials (so any master admits their workers); the master holding the
store's lease (one at a time: `store.allocations.lead`) then acts:

- it reads the state of each allocation from its backend (squeue): one whose workers joined
  runs (whatever squeue says of it yet), and resets its queue's failures once they have
  lived `early_ms` (a minute, or less for workers that leave sooner); one none of whose
  workers joined within `alloc_connect_timeout_s` of its start is cancelled and fails; one
  that failed, ended before any worker joined, or whose workers were all gone within
  `early_ms` of joining, fails;
- it counts, from the head of the queue, the tasks no live worker with a free slot could take
  now and no worker on its way (an allocation of the queue not joined yet, or one whose workers
  are away a moment, their leases not lapsed: the master restarted) will: tasks waiting
  on dependencies, held by a quota or a concurrency key, pinned to a worker, or that no queue
  could take (labels, resources, a timeout beyond its workers' time) count for none. Each
  task counts for the plainest queue that could take it (the fewest labels, then by name);
- it submits enough allocations for them, never more than `backlog` waiting in the cluster's
  queue nor beyond `max_workers`, and cancels waiting ones no longer needed;
- a failure backs its queue off (1, 2, 4 ... intervals) and, MAX_FAILURES in a row, pauses it
  with the reason (`gridrun alloc info`, the log, gridrun_allocation_failures).
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from gridrun.allocating import (
    MAX_FAILURES,
    Allocation,
    AllocQueue,
    AllocState,
    QueueConfig,
    QueueState,
    allocation_of,
)
from gridrun.auth import digest, new_token
from gridrun.clock import Clock
from gridrun.errors import AllocRefused, BadRequest, Forbidden, Unavailable
from gridrun.master.backends import Backend, Status, Submission, backend_for
from gridrun.master.core.access import Grants
from gridrun.master.core.alloc_demand import backoff_ms, demand, early_ms
from gridrun.master.core.alloc_fit import QueueBook
from gridrun.master.core.config import ServiceConfig
from gridrun.master.core.metrics import Metrics
from gridrun.model import WorkerState
from gridrun.store import Store

log = logging.getLogger("gridrun.master")

DEMAND_SCAN = 2000  # queued tasks, from the head, counted each look
# a restarted master waits this long (or its --liveness-timeout) for the workers of running
# allocations to find it again (a worker retries every 3 s at most) before it counts them gone
REJOIN_S = 15.0


class Allocator:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: ServiceConfig,
        metrics: Metrics,
        book: QueueBook,
        grants: Grants,
        backends: Callable[[QueueConfig], Backend] = backend_for,
    ) -> None:
        self.store, self.clock, self.config, self.metrics = store, clock, config, metrics
        self.book, self.grants, self._backend = book, grants, backends
        self.address = config.advertise  # the gRPC address workers dial (set by the master)
        self.workdir = Path(config.alloc_dir or "gridrun-data/alloc")
        self.leading = False
        self.started_at = clock.now_ms()  # (its workers could not be heard before)

    async def admit_running(self) -> list[Allocation]:
        """Hand the running allocations' credentials to `access.Grants` (the master calls it
        once before it accepts workers: a worker coming back at once after a restart is not
        refused for the first look not having come yet); the active allocations."""
        active = await self.store.allocations.active_allocations()
        self.grants.set({a.token_hash: a.id for a in active if a.token_hash})
        return active

    # ---- the look, every alloc_interval_s

    async def tick(self) -> None:
        allocations = self.store.allocations
        now = self.clock.now_ms()
        queues = await allocations.list_queues()
        self.book.set(queues)
        active = await self.admit_running()
        for queue in queues:
            self.metrics.alloc_paused.labels(queue.name).set(queue.state is QueueState.PAUSED)
        if not queues and not active:
            return
        lease_ms = round(self.config.alloc_interval_s * 3000) + 5000
        self.leading = await allocations.lead(now, now + lease_ms)
        if not self.leading:
            return
        queues = [q for q in queues if q.config.backend in self.config.alloc_backends]
        by_name = {q.name: q for q in queues}
        every = await self.store.workers.list_workers()
        workers = [w for w in every if w.state_at(now) is WorkerState.ONLINE]
        joined = Counter(allocation_of(w.id) for w in workers)
        # joined, and its workers' leases all lapsed, as for their tasks (not a moment away: a
        # restart of the master, a blip of the network), none counted before this master began
        lease: dict[str | None, int] = {}  # an allocation -> the latest of its workers' leases
        for w in every:
            named = allocation_of(w.id)
            lease[named] = max(lease.get(named, 0), w.lease_until or 0)
        first = self.started_at + round(max(self.config.liveness_timeout_s, REJOIN_S) * 1000)
        gone = {
            a.id
            for a in active
            if a.connected_at is not None
            and not joined.get(a.id)
            and max(lease.get(a.id, 0), first) < now
        }
        active = await self._refresh(active, by_name, joined, gone)
        queues = [by_name[q.name] for q in queues]
        self.book.set(queues)
        candidates = await self.store.dispatch.queued(DEMAND_SCAN, None, self.clock.now_ms())
        need = demand(candidates, queues, workers, active, gone)
        for queue in queues:
            mine = [a for a in active if a.queue == queue.name]
            await self._act(queue, need.get(queue.name, 0), mine, by_name)

    async def _refresh(
        self,
        active: list[Allocation],
        by_name: dict[str, AllocQueue],
        joined: Counter[str | None],
        gone: set[str],
    ) -> list[Allocation]:
        """The active allocations as their backend sees them now (`joined`: how many of
        their workers are online; `gone`: those whose workers' leases have all lapsed); those
        that ended are recorded (and fail their queue where they failed)."""
        still = []
        by_queue: dict[str, list[Allocation]] = {}
        for allocation in active:
            if allocation.queue in by_name:  # (not: its queue was removed meanwhile)
                by_queue.setdefault(allocation.queue, []).append(allocation)
        for name, group in by_queue.items():
            backend = self._backend(by_name[name].config)
            try:
                statuses = await backend.statuses([a.backend_id for a in group if a.backend_id])
            except (AllocRefused, BadRequest) as exc:
                log.warning("cannot read the allocations' states: %s", exc.message)
                still += group
                continue
            for allocation in group:
                queue = by_name[allocation.queue]
                now = self.clock.now_ms()
                status = statuses.get(allocation.backend_id)
                changed = allocation
                if joined.get(allocation.id) and allocation.connected_at is None:
                    changed = replace(changed, connected_at=now)
                # its workers joined and lived: the queue works (not at the first join:
                # workers that die at once would reset the count they add to)
                lived = now - (changed.connected_at or now)
                if (
                    joined.get(allocation.id)
                    and lived >= early_ms(queue.config)
                    and (queue.failures or queue.reason)
                ):
                    by_name[queue.name] = queue = await self._save_queue(
                        replace(queue, failures=0, reason=None, next_at=0)
                    )
                if not allocation.backend_id:
                    changed = replace(
                        changed, state=AllocState.FAILED, ended_at=now,
                        error="the master stopped before it was submitted",
                    )  # fmt: skip
                elif status is None or not status.state.active:
                    changed = await self._ended(changed, status, by_name)
                elif not backend.tracks and changed.connected_at and changed.id in gone:
                    # no scheduler to ask: its workers joined, and all are gone for good
                    left = Status(AllocState.ENDED, "its workers left")
                    changed = await self._ended(changed, left, by_name)
                elif status.state is AllocState.RUNNING or joined.get(changed.id):
                    # its workers joined: it runs, whatever its scheduler says yet (Slurm shows
                    # a started job CONFIGURING until it has seen its node ready)
                    changed = replace(
                        changed, state=AllocState.RUNNING, started_at=changed.started_at or now
                    )
                    changed = await self._check_joined(changed, by_name)
                if changed != allocation:
                    await self.store.allocations.save_allocation(changed)
                if changed.state.active:
                    still.append(changed)
        return still

    async def _ended(
        self, allocation: Allocation, status: Status | None, by_name: dict[str, AllocQueue]
    ) -> Allocation:
        now = self.clock.now_ms()
        state = status.state if status is not None else AllocState.ENDED
        detail = (status.detail if status is not None else None) or "no longer known to it"
        queue = by_name[allocation.queue]
        joined_at = allocation.connected_at
        if state is AllocState.ENDED and joined_at is None:
            state = AllocState.FAILED
            detail = f"it ended ({detail}) before any of its workers joined"
        elif (
            state is AllocState.ENDED
            and joined_at is not None
            and now - joined_at < early_ms(queue.config)
        ):
            # not idle, not at their time limit: they died (a crash, a kill, a bad argument)
            state = AllocState.FAILED
            lived = (now - joined_at) / 1000
            detail = f"its workers were gone within {lived:.0f}s of joining ({detail})"
        ended = replace(allocation, state=state, ended_at=now, error=detail)
        if state is AllocState.FAILED:
            await self._failed(
                by_name, allocation.queue,
                f"allocation {allocation.id} (job {allocation.backend_id}) failed: {detail}"
                f" (its output: {self._output_of(queue, allocation)})",
            )  # fmt: skip
        else:
            log.info("allocation %s (job %s) of queue %s ended: %s", allocation.id,
                     allocation.backend_id, allocation.queue, detail)  # fmt: skip
        return ended

    async def _check_joined(
        self, allocation: Allocation, by_name: dict[str, AllocQueue]
    ) -> Allocation:
        """A running allocation none of whose workers joined in time is cancelled, failed."""
        if allocation.connected_at is not None or allocation.started_at is None:
            return allocation
        waited = (self.clock.now_ms() - allocation.started_at) / 1000
        if waited < self.config.alloc_connect_timeout_s:
            return allocation
        queue = by_name[allocation.queue]
        try:
            await self._backend(queue.config).cancel([allocation.backend_id])
        except AllocRefused as exc:
            log.warning("cannot cancel allocation %s: %s", allocation.id, exc.message)
            return allocation
        why = (
            f"none of its workers joined within {self.config.alloc_connect_timeout_s:g}s of its"
            f" start (is {self.address} reachable from the nodes? its output:"
            f" {self._output_of(queue, allocation)})"
        )
        await self._failed(by_name, queue.name, f"allocation {allocation.id}: {why}")
        return replace(allocation, state=AllocState.FAILED, ended_at=self.clock.now_ms(), error=why)

    def _output_of(self, queue: AllocQueue, allocation: Allocation) -> str:
        if queue.config.backend == "slurm":
            return f"{self.workdir / queue.name}/slurm-{allocation.backend_id}.out, on its node"
        return "wherever its start command put it"

    async def _failed(self, by_name: dict[str, AllocQueue], name: str, why: str) -> None:
        queue = by_name[name]
        failures = queue.failures + 1
        self.metrics.alloc_failures.labels(name).inc()
        if failures >= MAX_FAILURES:
            reason = f"paused after {failures} failures in a row; the last: {why}"
            log.error("allocation queue %s %s", name, reason)
            changed = replace(queue, state=QueueState.PAUSED, failures=failures, reason=reason)
        else:
            wait = backoff_ms(failures, self.config.alloc_interval_s)
            log.warning("allocation queue %s: %s (failure %d in a row; next try in %gs)",
                        name, why, failures, wait / 1000)  # fmt: skip
            changed = replace(
                queue, failures=failures, reason=why, next_at=self.clock.now_ms() + wait
            )
        by_name[name] = await self._save_queue(changed)

    async def _save_queue(self, queue: AllocQueue) -> AllocQueue:
        await self.store.allocations.update_queue(queue)
        self.metrics.alloc_paused.labels(queue.name).set(queue.state is QueueState.PAUSED)
        return queue

    async def _act(
        self, queue: AllocQueue, need: int, mine: list[Allocation], by_name: dict[str, AllocQueue]
    ) -> None:
        queue = by_name[queue.name]
        if queue.state is not QueueState.ACTIVE:
            return
        config = queue.config
        waiting = [a for a in mine if a.state is AllocState.QUEUED]
        if need < 0 and waiting:  # more coming than wanted: cancel waiting ones that are not
            surplus = -need
            for allocation in sorted(waiting, key=lambda a: a.created_at, reverse=True):
                size = allocation.workers * config.slots_each
                if size > surplus:
                    break
                await self._cancel(queue, allocation, "no longer needed: no task waits for it")
                surplus -= size
            return
        if need <= 0 or self.clock.now_ms() < queue.next_at:
            return
        per = config.slots_each * config.workers_per_alloc
        count = min(math.ceil(need / per), config.backlog - len(waiting))
        if config.max_workers is not None:
            running = sum(a.workers for a in mine)
            count = min(count, (config.max_workers - running) // config.workers_per_alloc)
        for _ in range(max(count, 0)):
            if not await self._submit(queue, by_name):
                return

    async def _cancel(self, queue: AllocQueue, allocation: Allocation, why: str) -> None:
        try:
            if allocation.backend_id:
                await self._backend(queue.config).cancel([allocation.backend_id])
        except AllocRefused as exc:
            log.warning("cannot cancel allocation %s: %s", allocation.id, exc.message)
            return
        log.info("cancelled allocation %s (job %s) of queue %s: %s", allocation.id,
                 allocation.backend_id, queue.name, why)  # fmt: skip
        await self.store.allocations.save_allocation(
            replace(allocation, state=AllocState.CANCELLED, ended_at=self.clock.now_ms(), error=why)
        )

    async def _submit(self, queue: AllocQueue, by_name: dict[str, AllocQueue]) -> bool:
        """Submit one allocation of the queue; False if it was refused (a failure)."""
        token = new_token()
        allocation = Allocation(
            id=secrets.token_hex(6),
            queue=queue.name,
            state=AllocState.QUEUED,
            workers=queue.config.workers_per_alloc,
            created_at=self.clock.now_ms(),
            token_hash=digest(token),
        )
        # recorded (and its credential valid) before the scheduler may start it
        await self.store.allocations.save_allocation(allocation)
        self.grants.add(allocation.token_hash, allocation.id)
        try:
            job_id = await self._backend(queue.config).submit(
                self._submission(queue, allocation, token)
            )
        except AllocRefused as exc:
            await self.store.allocations.save_allocation(
                replace(allocation, state=AllocState.FAILED, ended_at=self.clock.now_ms(),
                        error=exc.message)
            )  # fmt: skip
            self.grants.remove(allocation.token_hash)
            await self._failed(by_name, queue.name, exc.message)
            return False
        await self.store.allocations.save_allocation(replace(allocation, backend_id=job_id))
        self.metrics.alloc_submitted.labels(queue.name).inc()
        log.info("allocation queue %s: submitted allocation %s (job %s)", queue.name,
                 allocation.id, job_id)  # fmt: skip
        return True

    def _submission(self, queue: AllocQueue, allocation: Allocation, token: str) -> Submission:
        master = queue.config.master or self.address
        return Submission(queue, allocation, token, master, self.workdir / queue.name)

    # ---- what users ask (gridrun alloc ...)

    async def add(self, queue: AllocQueue, *, dry_run: bool = True) -> AllocQueue:
        """Add a queue; first, unless told not to, a dry run that the scheduler accepts."""
        self._allowed(queue.config)
        if dry_run:
            await self.dry_run(queue.name, queue.config)
        added = await self.store.allocations.add_queue(queue)
        log.info("allocation queue %s added (%s)", queue.name, queue.config.backend)
        return added

    def _allowed(self, config: QueueConfig) -> Backend:
        backend = self._backend(config)  # an unknown one is a 400
        if config.backend not in self.config.alloc_backends:
            allowed = ", ".join(self.config.alloc_backends) or "none"
            raise Forbidden(
                f"this master allows the allocation backends {allowed}, not {config.backend}"
                f" (gridrun master --alloc-backend {config.backend}: the command backend runs"
                " commands on the master's host)"
            )
        return backend

    async def dry_run(self, name: str, config: QueueConfig) -> str:
        """Submit a held test allocation, then cancel it: what the scheduler said. Raises
        AllocRefused with its reason when it refuses."""
        backend = self._allowed(config)
        queue = AllocQueue(name, config, created_at=self.clock.now_ms())
        allocation = Allocation(
            id=secrets.token_hex(6), queue=name, state=AllocState.QUEUED,
            workers=config.workers_per_alloc, created_at=self.clock.now_ms(),
        )  # fmt: skip
        job_id = await backend.submit(self._submission(queue, allocation, "dry-run"), hold=True)
        if not backend.tracks:  # nothing was started: a held run of a command is not one
            return f"{config.args[0]} is there (a dry run does not run it: it starts workers)"
        await backend.cancel([job_id])
        return f"{backend.name} accepted a test allocation (job {job_id}, held, then cancelled)"

    async def set_paused(self, name: str, paused: bool) -> AllocQueue:
        queue = await self.store.allocations.get_queue(name)
        if paused:
            changed = replace(queue, state=QueueState.PAUSED, reason="paused by a user")
        else:  # a fresh start: its failures forgotten
            changed = replace(queue, state=QueueState.ACTIVE, reason=None, failures=0, next_at=0)
        return await self._save_queue(changed)

    async def remove(self, name: str) -> tuple[AllocQueue, int]:
        """Cancel what the queue started, then remove it; (the queue, allocations cancelled)."""
        queue = await self.store.allocations.get_queue(name)
        mine = [a for a in await self.store.allocations.active_allocations() if a.queue == name]
        ids = [a.backend_id for a in mine if a.backend_id]
        if ids:
            try:
                await self._backend(queue.config).cancel(ids)
            except AllocRefused as exc:
                raise Unavailable(f"cannot cancel the queue's allocations: {exc.message}") from None
        for allocation in mine:
            self.grants.remove(allocation.token_hash)
        await self.store.allocations.remove_queue(name)
        log.info("allocation queue %s removed; %d allocation(s) cancelled", name, len(mine))
        return queue, len(mine)

    async def info(
        self, name: str, limit: int = 100
    ) -> tuple[AllocQueue, list[Allocation], dict[str, int]]:
        """A queue, its allocations (newest first) and, for each, its workers online now."""
        queue = await self.store.allocations.get_queue(name)
        allocations = await self.store.allocations.allocations(name, limit)
        now = self.clock.now_ms()
        online: Counter[str] = Counter()
        for worker in await self.store.workers.list_workers():
            alloc_id = allocation_of(worker.id)
            if alloc_id is not None and worker.state_at(now) is WorkerState.ONLINE:
                online[alloc_id] += 1
        return queue, allocations, dict(online)

    async def overview(self) -> list[tuple[AllocQueue, list[Allocation]]]:
        """Every queue with its active allocations."""
        active = await self.store.allocations.active_allocations()
        return [
            (q, [a for a in active if a.queue == q.name])
            for q in await self.store.allocations.list_queues()
        ]
