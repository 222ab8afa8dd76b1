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

QUEUE_SCAN_BATCH = 512
QUEUE_SCAN_LIMIT = 8192  # bound the work of one dispatch pass over tasks nobody can take now


class Dispatcher:
    def __init__(self, service: Service) -> None:
        self.service = service

    async def dispatch(self) -> int:
        """Place queued tasks on free slots; return how many were assigned."""
        assigned = 0
        capacities = [s.capacity() for s in self.service.sessions if s.reconciled and not s.closed]
        after: tuple[int, int] | None = None
        scanned = batch = 0
        while scanned < QUEUE_SCAN_LIMIT and (free := sum(c.free for c in capacities)):
            # Read about as many as could be placed (a slot freed by a finish reads 2 rows, not
            # 16); when some could not be placed here (labels, resources), read four times
            # more each time, so a long head nobody here can take costs few reads.
            batch = min(QUEUE_SCAN_BATCH, max(free * 2, batch * 4))
            candidates, placed, claimed = await self.service.store.place_and_claim(
                batch,
                after,
                self.service.clock.now_ms(),
                lambda read: scheduler.place(read, capacities),
            )
            if not candidates:
                break
            scanned += len(candidates)
            if placed:
                for task in claimed:
                    await self._send_assignment(task)
                assigned += len(claimed)
                if len(claimed) < len(placed):
                    # another master claimed some first: the slots this pass counted as
                    # taken are free, so look again with fresh counts
                    self.service.dispatch_wanted.set()
                    break
            if len(candidates) < batch:
                break
            after = (candidates[-1].priority, candidates[-1].seq)
        return assigned

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
