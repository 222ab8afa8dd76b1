"""Dispatch: one pass places queued tasks on the free slots of the workers connected here,
claims them in the store and sends each its Assign. What fits where is `scheduler.place`
(pure); this is the reading of the queue, the claim and the sending around it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gridrun.master import scheduler
from gridrun.master.sealing import Unsealable
from gridrun.master.sessions import AssignCmd
from gridrun.model import Outcome, Report, Task

if TYPE_CHECKING:
    from gridrun.master.service import Service

log = logging.getLogger("gridrun.master")

SHAPES_PER_PASS = 1024  # a pass looks at this many shapes; the next goes on from there


class Dispatcher:
    """Tasks are read by shape (what placement reads of them: labels, resources, class,
    pinned worker; see Store.queued_shapes): a pass lists the shapes in the queue, one seek
    each, drops those no free slot here can take, and reads only the heads of the rest. So
    tasks that cannot run now, however many, cost a seek per shape, never a row each."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._after = ""  # where the next pass's look at the shapes starts

    async def dispatch(self) -> int:
        """Place queued tasks on free slots; return how many were assigned."""
        capacities = [s.capacity() for s in self.service.sessions if s.reconciled and not s.closed]
        free = sum(c.free for c in capacities)
        if not free:
            return 0
        store = self.service.store
        shapes = await store.queued_shapes(self._after, SHAPES_PER_PASS)
        self._after = shapes[-1].key if len(shapes) == SHAPES_PER_PASS else ""
        runnable = [s for s in shapes if any(scheduler.eligible(s.probe, c) for c in capacities)]
        if not runnable:
            return 0
        _, placed, claimed = await store.place_and_claim_heads(
            runnable,
            free,  # enough of each shape to fill every free slot
            self.service.clock.now_ms(),
            lambda read: scheduler.place(read, capacities),
        )
        for task in claimed:
            await self._send_assignment(task)
        if len(claimed) < len(placed):
            # another master claimed some first: the slots this pass counted as taken are
            # free, so look again with fresh counts
            self.service.dispatch_wanted.set()
        return len(claimed)

    async def _send_assignment(self, task: Task) -> None:
        session = self.service.sessions.get(task.worker_id)
        if session is None or session.closed:
            # The worker left while we claimed: nothing was sent, so the task simply goes back.
            assert task.worker_id is not None
            await self.service.store.record_finish(
                task.ref, task.worker_id, Report(Outcome.NO_SLOT), self.service.clock.now_ms()
            )
            self.service.dispatch_wanted.set()
            return
        secret_env: dict[str, str] = {}
        if task.spec.secrets is not None:
            try:
                secret_env = self.service.sealer.unseal(task.spec.secrets)
            except Unsealable as exc:
                # never sent without its secrets: the attempt fails, saying why
                assert task.worker_id is not None
                log.error("task %s cannot be sent: %s", task.id, exc)
                report = Report(Outcome.REJECTED, error=f"not run: {exc}")
                result = await self.service.store.record_finish(
                    task.ref, task.worker_id, report, self.service.clock.now_ms()
                )
                if result.task is not None:
                    self.service.settled([result.task])
                return
        session.hold(task.ref, task.spec, self.service.clock.monotonic())
        session.send(AssignCmd(task, self.service.config.kill_grace_s, secret_env))
        self.service.watchers.touched(task.id)
