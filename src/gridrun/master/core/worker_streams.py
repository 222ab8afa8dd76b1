"""The master's end of its workers' streams: a worker joins (its Hello: registered, and what
it runs reconciled with what was recorded), reports (applied in one transaction per batch,
results acknowledged once committed), drains and leaves: the gRPC edge's use cases.

The Started of a worker that announces its starts waits up to STARTED_DEFER_S for what follows
(see WorkerSession.defer): a short task's Started and Finished are then written once, not twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from gridrun.clock import Clock
from gridrun.master.core.config import ServiceConfig
from gridrun.master.core.pacing import Pacing
from gridrun.master.core.sessions import CancelCmd, Sessions, WelcomeCmd, WorkerSession
from gridrun.master.core.signals import Signals
from gridrun.master.core.trust import Trust
from gridrun.model import AttemptRef, Outcome, Report, Task, TaskState, WorkerState
from gridrun.store import Finished, Started, Store, WorkerReport

log = logging.getLogger("gridrun.master")


class WorkerStreams:
    def __init__(
        self, store: Store, clock: Clock, config: ServiceConfig, sessions: Sessions,
        pacing: Pacing, trust: Trust, signals: Signals,
    ) -> None:  # fmt: skip
        self.store, self.clock, self.config, self.sessions = store, clock, config, sessions
        self.pacing, self.trust, self.signals = pacing, trust, signals
        self.metrics = signals.metrics
        self._flushes: set[asyncio.Task[None]] = set()  # deferred Started being written

    async def hello(
        self,
        session: WorkerSession,
        running: Sequence[AttemptRef],
        unacked: Sequence[AttemptRef],
        *,
        resumed: bool = False,
    ) -> None:
        """A worker (re)connected: register it and reconcile what it runs with what we recorded.

        An attempt recorded for it that it neither runs nor has a result of ends `lost`: after
        a restart, the worker's previous process may have started it. When the same process
        reconnects (`resumed`), an attempt still `assigned` never reached it (a stream that
        broke with the assignment in flight, or a claim whose commit was cut off): it goes
        back to the queue instead."""
        now = self.clock.now_ms()
        session.reported = set(running) | set(unacked)  # before anyone can see the session
        self.sessions.add(session)
        session.connected_at = now
        session.heartbeat_s, session.timeout_s = self.pacing.pace(len(self.sessions))
        await self.store.workers.upsert_worker(
            session.info(WorkerState.ONLINE, last_seen=now), self.pacing.lease_until(now, session)
        )
        session.send(
            WelcomeCmd(
                session.worker_id,
                session.heartbeat_s,
                self.config.output_cap,
                session.identity_secret,
            )
        )
        held = set(running) | set(unacked)
        if resumed:
            for task in await self.store.attempts.active_attempts(session.worker_id):
                if task.ref not in held and task.state is TaskState.ASSIGNED:
                    await self._never_reached(task.ref, session.worker_id)
        lost = await self.store.attempts.mark_lost(
            session.worker_id, list(held), now, "the worker reconnected without this attempt"
        )
        for task in lost:
            log.warning(
                "task %s attempt %d on worker %s: %s (the worker reconnected without it)",
                task.id, task.attempt, session.worker_id, task.state,
            )  # fmt: skip
        self.signals.settled(lost)
        active = {t.ref: t for t in await self.store.attempts.active_attempts(session.worker_id)}
        for ref in running:
            holding = active.get(ref)
            if holding is None:
                session.send(CancelCmd(ref, "this attempt is no longer held by this worker"))
            else:
                # its deadline counts from now
                session.hold(ref, holding.spec, self.clock.monotonic(), running=True)
                if holding.cancel_requested:
                    session.send(CancelCmd(ref, "cancelled by request"))
        session.quarantined = self.trust.quarantine_reason(session)
        session.reconciled = True
        self.signals.wake()

    async def reports(self, session: WorkerSession, reports: Sequence[WorkerReport]) -> None:
        """Apply what a worker reported (a batch of its messages, in order) in one
        transaction; acknowledge its results once that is committed. The Started of a worker
        that announces its starts waits up to STARTED_DEFER_S for what follows (see
        WorkerSession.defer): in memory meanwhile, as the session's `started`."""
        if session.announces and all(isinstance(r, Started) for r in reports):
            started = [r for r in reports if isinstance(r, Started)]
            for report in started:
                session.began(report.ref, self.clock.monotonic())
            session.defer(started, lambda: self._flush_deferred(session))
            return
        async with session.writing:
            await self._apply(session, [*session.take_deferred(), *reports])

    def _flush_deferred(self, session: WorkerSession) -> None:
        async def flush() -> None:
            async with session.writing:
                deferred = session.take_deferred()
                if deferred:
                    await self._apply(session, deferred)

        task = asyncio.create_task(flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not record a start: %r", task.exception())

    async def _apply(self, session: WorkerSession, reports: Sequence[WorkerReport]) -> None:
        # a Started followed by its attempt's Finished says nothing the Finished does not
        # (it carries started_at): most short tasks are written once, not twice
        finished = {r.ref for r in reports if isinstance(r, Finished)}
        if finished:
            reports = [r for r in reports if not (isinstance(r, Started) and r.ref in finished)]
        ended = False
        for report in reports:
            if isinstance(report, Finished):
                session.release(report.ref)
                session.freed_at = self.clock.monotonic()
                ended = True
            else:
                session.began(report.ref, self.clock.monotonic())  # output too: it started
        if ended:
            # The process has ended, so its slot is free now: let the next claim share this
            # commit instead of waiting for it.
            self.signals.wake()
        results = await self.store.attempts.record_reports(
            session.worker_id, reports, self.config.output_cap, self.clock.now_ms()
        )
        if ended:
            # a requeued (no-slot) task is claimable only from here
            self.signals.wake()
        settled = []
        for report, result in zip(reports, results, strict=True):
            if isinstance(report, Finished):
                session.ack(report.ref)  # durable now (or stale and dropped): it may forget it
            if not result.applied:
                what = type(report).__name__.lower()
                self._stale(session, report.ref, what)
                if isinstance(report, Started):
                    reason = "this attempt is no longer held by this worker"
                    session.send(CancelCmd(report.ref, reason))
                continue
            self.signals.touched(report.ref.task_id)
            if isinstance(report, Finished):
                if report.report.usage is not None:
                    self.metrics.used(report.report.usage)
                if result.task is not None:
                    settled.append(result.task)  # also when it went back for a retry
        self.signals.settled(settled)

    async def delivered(self, session: WorkerSession, ref: AttemptRef) -> None:
        """A legacy worker was handed the command; it will never say more."""
        await self.store.attempts.mark_delivered(ref, session.worker_id, self.clock.now_ms())
        session.release(ref)
        self.signals.wake()
        delivered = await self.store.tasks.get_task(ref.task_id)
        self.signals.settled([delivered])

    async def disconnected(self, session: WorkerSession) -> None:
        async with session.writing:  # what it said started is recorded before it is judged
            if deferred := session.take_deferred():
                await self._apply(session, deferred)
        if not self.sessions.remove(session):
            return  # replaced by a newer connection of the same worker
        now = self.clock.now_ms()
        if session.legacy:
            # never handed over: put back in the queue (a legacy worker holds nothing in flight)
            for ref in list(session.inflight):
                await self.store.attempts.record_finish(
                    ref, session.worker_id, Report(Outcome.NO_SLOT), now
                )
        # its lease runs on from its last word, so its attempts are judged a timeout after it
        last_word = self.pacing.epoch_ms(session.last_seen)
        await self.store.workers.upsert_worker(
            session.info(WorkerState.OFFLINE, last_seen=now),
            self.pacing.lease_until(last_word, session),
        )
        self.signals.wake()

    async def draining(self, session: WorkerSession, reason: str) -> None:
        """From now on nothing is placed on this worker; its running tasks finish."""
        session.draining = True
        log.info("worker %s is draining: %s", session.worker_id, reason)
        now = self.clock.now_ms()
        await self.store.workers.upsert_worker(
            session.info(WorkerState.DRAINING, now), self.pacing.lease_until(now, session)
        )

    async def requeue_unsent(self, older_than_ms: int) -> list[Task]:
        """Put back in the queue attempts assigned to our workers that no stream of ours
        carried: a claim whose COMMIT was cut off (so we could not know it happened), or one
        another master made as the worker moved here. The worker never had them."""
        requeued = []
        for ref, worker_id in await self.store.workers.assigned_here(older_than_ms):
            session = self.sessions.get(worker_id)
            if session is None or session.closed or session.legacy:
                continue  # judged by its lease instead
            if ref in session.inflight or ref in session.reported:
                continue
            if (task := await self._never_reached(ref, worker_id)) is not None:
                requeued.append(task)
        return requeued

    async def _never_reached(self, ref: AttemptRef, worker_id: str) -> Task | None:
        """Put back in the queue an attempt its worker never received (not a try)."""
        log.warning(
            "task %s attempt %d was assigned to worker %s but never reached it; requeued",
            ref.task_id, ref.attempt, worker_id,
        )  # fmt: skip
        result = await self.store.attempts.record_finish(
            ref, worker_id, Report(Outcome.NO_SLOT, error="never reached the worker"),
            self.clock.now_ms(),
        )  # fmt: skip
        if result.task is None:
            return None
        self.signals.settled([result.task])
        self.signals.wake()
        return result.task

    def _stale(self, session: WorkerSession, ref: AttemptRef, what: str) -> None:
        self.metrics.stale_report()
        log.info(
            "dropped stale %s for task %s attempt %d from worker %s",
            what,
            ref.task_id,
            ref.attempt,
            session.worker_id,
        )
