"""Liveness: which workers are alive, judged from leases any master can read.

The master holding a worker's stream renews its lease in the database every period (and closes
streams silent for longer than the liveness timeout); a worker whose lease ran out while it held
attempts has those attempts ended as lost (or retried), by whichever master looks first. Also
the periodic chores: expiring tasks past their queue timeout, waking dispatch when a retry
backoff ends, saying which queued tasks no live worker could run, firing due schedules, and
(with other masters on the database) a dispatch pass in case a notice was missed.
"""

from __future__ import annotations

import asyncio
import logging

from gridrun.clock import Clock
from gridrun.dispatching import Candidate
from gridrun.errors import Unavailable
from gridrun.master.core import fairness, scheduler
from gridrun.master.core.alloc_fit import QueueBook
from gridrun.master.core.config import ServiceConfig
from gridrun.master.core.pacing import Pacing
from gridrun.master.core.retention import Retention
from gridrun.master.core.schedules import Schedules
from gridrun.master.core.sessions import Sessions
from gridrun.master.core.signals import Signals
from gridrun.master.core.trust import Trust
from gridrun.master.core.worker_streams import WorkerStreams
from gridrun.model import Task, WorkerState
from gridrun.store import Store

log = logging.getLogger("gridrun.master")
UNSCHEDULABLE_SCAN = 500  # queued tasks, from the head, checked each period


class Liveness:
    def __init__(
        self, store: Store, clock: Clock, config: ServiceConfig, sessions: Sessions,
        signals: Signals, pacing: Pacing, trust: Trust, streams: WorkerStreams,
        retention: Retention, schedules: Schedules, book: QueueBook | None = None,
    ) -> None:  # fmt: skip
        self.store, self.clock, self.config, self.sessions = store, clock, config, sessions
        self.signals, self.pacing, self.trust, self.streams = signals, pacing, trust, streams
        self.retention, self.schedules = retention, schedules
        self.book = book if book is not None else QueueBook()  # the allocation queues
        self.timeout_s = config.liveness_timeout_s
        self.period_s = min(1.0, self.timeout_s / 4)
        # Leases of other masters' workers are judged only after this master has seen the store
        # healthy for a whole timeout: after its own start, or after losing the store, the
        # masters holding those leases may not have renewed them yet.
        self.judge_after = clock.monotonic() + self.timeout_s
        self.store_failed = False  # the last check could not reach or write the store
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="liveness")

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            if self.store.shared:
                # a missed notice from another master delays a dispatch by one period at most
                self.signals.wake()
            try:
                await self.check()
                await self.housekeeping()
            except Unavailable as exc:
                # No lease could be renewed meanwhile (ours or other masters'), and workers
                # were sent away to back off: judge none until the store has been healthy for a
                # whole timeout again, counted from the check that finds it back.
                self.store_failed = True
                log.warning("liveness check skipped: %s", exc)
            except Exception:
                log.exception("liveness check failed; retrying")

    async def check(self) -> list[Task]:
        """Close silent sessions, renew the leases of the rest, requeue assignments our workers
        never got, and end as lost the attempts of workers whose lease ran out."""
        now = self.clock.monotonic()
        timeout = self.timeout_s
        for session in self.sessions:
            # legacy workers never speak after connecting and hold nothing once delivered
            silent = now - session.last_seen
            if not session.closed and not session.legacy and silent > session.timeout_s:
                # its stream handler ends and calls `disconnected`; attempts are judged below
                session.close(f"silent for more than {session.timeout_s:g}s")
            if not session.closed and not session.legacy:
                # a worker that heartbeats but never reports cannot hold tasks for good
                for ref, why in self.trust.overdue(session, now):
                    await self.trust.missed_deadline(session, ref, why)
                self.trust.quarantine_reason(session)  # lifts one that ran out
        self.pacing.repace()
        now_ms = self.clock.now_ms()
        # A lease (as long as its worker's timeout) is renewed once half a heartbeat interval
        # of it is spent: every round for a small fleet, as a master that dies leaves its
        # workers the whole timeout to reach another master before their attempts are lost;
        # every few seconds for a large one, whose timeouts are long.
        await self.store.workers.renew_leases(
            [
                (s.worker_id, self.pacing.epoch_ms(s.last_seen), self.pacing.lease_until(now_ms, s))
                for s in self.sessions
                if not s.closed
                and s.lease_until - now_ms < (s.timeout_s - s.heartbeat_s / 2) * 1000
            ]
        )
        await self.streams.requeue_unsent(now_ms - round(timeout * 1000))
        lost: list[Task] = []
        if self.store_failed:  # the store is back from here
            self.store_failed = False
            self.judge_after = now + timeout
        if now < self.judge_after:
            return lost
        for worker_id in await self.store.workers.lapsed(now_ms):
            current = self.sessions.get(worker_id)
            if current is not None and not current.closed:
                continue
            lost += await self.store.attempts.mark_lost(
                worker_id,
                [],
                now_ms,
                f"worker {worker_id} was unreachable for more than {timeout:g}s",
            )
        for task in lost:
            log.warning(
                "task %s attempt %d %s: %s", task.id, task.attempt, task.state, task.error,
                extra={"task_id": task.id, "attempt": task.attempt, "worker_id": task.worker_id},
            )  # fmt: skip
        self.signals.settled(lost)
        return lost

    async def housekeeping(self) -> None:
        """Expire tasks past their queue timeout; wake dispatch when a retry backoff ends."""
        now = self.clock.now_ms()
        expired = await self.store.tasks.expire(now)
        for task in expired:
            log.info("task %s expired: %s", task.id, task.error, extra={"task_id": task.id})
        self.signals.settled(expired)
        if await self.store.dispatch.retry_due(now):
            self.signals.wake()
        await self.flag_unschedulable(now)
        await self.schedules.fire_due()
        await self.store.fold_counts()
        await self.retention.tick()
        forget_ms = round(self.config.forget_workers_after_s * 1000)
        connected = {s.worker_id for s in self.sessions if not s.closed}
        unused_ms = round(self.config.forget_unused_workers_after_s * 1000)
        for worker_id in await self.store.workers.forget_workers(
            now - forget_ms, connected, now - unused_ms
        ):
            log.info("forgot worker %s: not heard from for a while (--forget-workers, or"
                     " --forget-unused-workers for one that never ran anything)",
                     worker_id)  # fmt: skip

    def _allocations_say(self, candidate: Candidate, why: str | None) -> str | None:
        """The reason no live worker could take a task, with what the allocation queues can
        do about it: bring one up, or not (and why not)."""
        if why is None or not self.book.queues:
            return why
        queue = self.book.bringing(candidate)
        if queue is not None:
            return f"{why}; allocation queue {queue} brings workers up for it"
        none = self.book.why_none(candidate)
        return (
            f"{why}, and {none}" if none is not None else f"{why} (its allocation queue is paused)"
        )

    async def flag_unschedulable(self, now: int) -> None:
        """Say, on each task at the head of the queue, why no live worker could ever take it
        (no worker matches its selector, or none has the CPUs, memory or GPUs it asks), and
        clear that once one could. Only the first UNSCHEDULABLE_SCAN queued tasks are looked at."""
        store = self.store
        candidates = await store.dispatch.queued(UNSCHEDULABLE_SCAN, None, now)
        if not candidates:
            return
        live = [
            w
            for w in self.pacing.as_seen(await self.store.workers.list_workers())
            if w.state is WorkerState.ONLINE
        ]
        changes = []
        without_files = {s.worker_id for s in self.sessions if not s.takes_files}
        for candidate in candidates:
            why = scheduler.why_unschedulable(candidate, live, without_files)
            why = self._allocations_say(candidate, why)
            if why is None and fairness.is_waiting(candidate.unschedulable):
                continue  # a limit holds it back: dispatch says so, and clears it
            if why != candidate.unschedulable:
                changes.append((candidate.task_id, why))
                if why is not None:
                    log.info("task %s is unschedulable: %s", candidate.task_id, why,
                             extra={"task_id": candidate.task_id})  # fmt: skip
        await store.dispatch.mark_unschedulable(changes)
        for task_id, _ in changes:
            self.signals.changed(task_id)  # followers and waiters see the reason
