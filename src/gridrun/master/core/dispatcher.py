"""Dispatch: one pass places queued tasks on the free slots of the workers connected here,
claims them in the store and sends each its Assign. What fits where is `scheduler.place`
(pure); this is the reading of the queue, the claim and the sending around it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from gridrun.clock import Clock
from gridrun.dispatching import Active, Candidate, Lane, Placed, Quota
from gridrun.master.core import fairness, scheduler
from gridrun.master.core.config import ServiceConfig
from gridrun.master.core.sealing import Sealer, Unsealable
from gridrun.master.core.sessions import AssignCmd, RevokeCmd, Sessions, WorkerSession
from gridrun.master.core.signals import Signals
from gridrun.model import Outcome, Report, Task
from gridrun.store import LaneRead, Store

log = logging.getLogger("gridrun.master")

LANES_PER_PASS = 1024  # a pass looks at this many lanes; the next goes on from there
# a full grid looks for queued tasks that outrank held ones at most this often (two reads)
ROOM_CHECK_S = 0.05


class Dispatcher:
    """Tasks are read by lane: one owner's tasks in one queue of one shape (what placement
    reads of them: labels, resources, class, pinned worker, concurrency key; see
    DispatchStore.queued_lanes). A pass lists the lanes in the queue, one seek each, drops those no
    free slot here can take, reads only the heads of the rest, and serves them by
    gridrun.master.core.fairness (priority, then each owner in turn, within quotas and
    concurrency limits). So tasks that cannot run now, however many, cost a seek per lane,
    never a row each, and no one submitter holds up the others."""

    def __init__(
        self, store: Store, clock: Clock, config: ServiceConfig, sessions: Sessions,
        signals: Signals, sealer: Sealer,
    ) -> None:  # fmt: skip
        self.store, self.clock, self.config, self.sessions = store, clock, config, sessions
        self.signals, self.sealer = signals, sealer
        self._after = ""  # where the next pass's look at the lanes starts
        self._room_checked = float("-inf")  # (monotonic) see _make_room
        self._room_timer = False

    async def dispatch(self) -> int:
        """Place queued tasks on free slots; return how many were assigned."""
        sessions = [s for s in self.sessions if s.reconciled and not s.closed]
        # (only workers with a place free can take anything: a fleet's full ones cost nothing)
        now = self.clock.monotonic()
        capacities = [s.capacity(now) for s in sessions if s.places()]
        free = sum(c.free for c in capacities)
        if not free:
            if any(s.prefetch for s in sessions):
                await self._make_room_soon(sessions)
            return 0
        claimed = await self._pass(sessions, capacities, free)
        if self._after and len(claimed) < free:
            # lanes beyond these were not looked at, and slots are still free: the next pass
            # goes on from here now, not when something next happens (10,000 lanes nothing
            # could take stalled the tasks behind them while workers sat idle)
            self.signals.wake()
        return len(claimed)

    async def _pass(
        self, sessions: list[WorkerSession], capacities: list[scheduler.Capacity], free: int
    ) -> list[Task]:
        """List the lanes, place and claim what those a free capacity could take hold, in
        one store transaction; the tasks claimed."""
        shares = self.config.shares
        waiting: dict[str, str] = {}

        def takes(lane: Lane) -> bool:
            return any(scheduler.eligible(lane.probe, c) for c in capacities)

        def planned(
            heads: dict[str, list[Candidate]], active: Active, quotas: Sequence[Quota]
        ) -> Placed:
            result = fairness.plan(heads, active, quotas, capacities, shares)
            waiting.update(result.waiting)
            return result.placed

        done = await self.store.dispatch.plan_and_claim(
            LaneRead(self._after, LANES_PER_PASS, takes),
            free,  # enough to fill every slot
            self.clock.now_ms(),
            planned,
            announcing={s.worker_id for s in sessions if s.announces},
        )
        self._after = done.lanes[-1].key if len(done.lanes) == LANES_PER_PASS else ""
        if not done.heads:
            if done.lanes and any(s.prefetch for s in sessions):
                await self._make_room_soon(sessions)  # queued, and no place here takes it
            return []
        for task in done.claimed:
            await self._send_assignment(task)
        if len(done.claimed) < len(done.placed):
            # another master claimed some first: the slots this pass counted as taken are
            # free, so look again with fresh counts
            self.signals.wake()
        await self._say_why_waiting(done.heads, waiting)
        in_heads = sum(map(len, done.heads.values()))
        if len(done.placed) < in_heads and any(s.prefetch for s in sessions):
            await self._make_room_soon(sessions)  # some of the heads found no place
        return done.claimed

    async def _make_room_soon(self, sessions: list[WorkerSession]) -> None:
        """_make_room, at most every ROOM_CHECK_S (a pass that comes sooner has a pass
        follow once that time is up, so a task submitted meanwhile is looked at)."""
        wait = self._room_checked + ROOM_CHECK_S - self.clock.monotonic()
        if wait > 0:
            if not self._room_timer:
                self._room_timer = True
                asyncio.get_running_loop().call_later(wait, self._room_due)
            return
        self._room_checked = self.clock.monotonic()
        await self._make_room(sessions)

    def _room_due(self) -> None:
        self._room_timer = False
        self.signals.wake()

    async def _make_room(self, sessions: list[WorkerSession]) -> None:
        """Queued tasks found no place: where one outranks an assignment a worker holds
        unstarted, revoke that one (it comes back NO_SLOT, not a try, and the next pass
        places the higher one first). So a held task never delays one of higher priority by
        more than a round trip."""
        held = [
            (spec.priority, ref, session)
            for session in sessions
            if session.batches and session.prefetch
            for ref, spec in session.inflight.items()
            if ref not in session.started and ref not in session.revoked
        ]
        if not held:
            return
        lowest = min(priority for priority, _, _ in held)
        store = self.store
        lanes = await store.dispatch.queued_lanes("", LANES_PER_PASS)
        heads = await store.dispatch.lane_heads(lanes, self.clock.now_ms(), 1)
        waiting = sorted(
            (c for c in heads if c.priority > lowest and not fairness.is_waiting(c.unschedulable)),
            key=lambda c: -c.priority,
        )
        held.sort(key=lambda h: h[0])
        for candidate in waiting:
            for i, (priority, ref, session) in enumerate(held):
                if priority >= candidate.priority:
                    break
                if scheduler.could_run(candidate, session.capacity(self.clock.monotonic())):
                    log.info(
                        "revoking task %s attempt %d held on worker %s: task %s (priority %d)"
                        " outranks it", ref.task_id, ref.attempt, session.worker_id,
                        candidate.task_id, candidate.priority,
                    )  # fmt: skip
                    session.revoked.add(ref)
                    session.send(RevokeCmd(ref, f"task {candidate.task_id} outranks it"))
                    del held[i]
                    break

    async def _say_why_waiting(
        self, heads: dict[str, list[Candidate]], waiting: dict[str, str]
    ) -> None:
        """Record why a limit holds tasks back, where it changed (or no longer holds)."""
        changes: list[tuple[str, str | None]] = []
        for candidate in (c for lane in heads.values() for c in lane):
            why = waiting.get(candidate.task_id)
            if why is None and not fairness.is_waiting(candidate.unschedulable):
                continue
            if why != candidate.unschedulable:
                changes.append((candidate.task_id, why))
        if changes:
            await self.store.dispatch.mark_unschedulable(changes)
            for task_id, _ in changes:
                self.signals.changed(task_id)

    async def _send_assignment(self, task: Task) -> None:
        session = self.sessions.get(task.worker_id)
        if session is None or session.closed:
            # The worker left while we claimed: nothing was sent, so the task simply goes back.
            assert task.worker_id is not None
            await self.store.attempts.record_finish(
                task.ref, task.worker_id, Report(Outcome.NO_SLOT), self.clock.now_ms()
            )
            self.signals.wake()
            return
        secret_env: dict[str, str] = {}
        if task.spec.secrets is not None:
            try:
                secret_env = self.sealer.unseal(task.spec.secrets)
            except Unsealable as exc:
                # never sent without its secrets: the attempt fails, saying why
                assert task.worker_id is not None
                log.error("task %s cannot be sent: %s", task.id, exc)
                report = Report(Outcome.REJECTED, error=f"not run: {exc}")
                result = await self.store.attempts.record_finish(
                    task.ref, task.worker_id, report, self.clock.now_ms()
                )
                if result.task is not None:
                    self.signals.settled([result.task])
                return
        session.hold(task.ref, task.spec, self.clock.monotonic())
        ticket = self.sealer.ticket(task.ref, session.worker_id) if task.spec.files else ""
        session.send(
            AssignCmd(task, self.config.kill_grace_s, secret_env, ticket, self.config.max_collect)
        )
        self.signals.touched(task.id)
