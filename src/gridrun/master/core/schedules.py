"""Schedules: tasks made on a cron schedule (UTC), stored durably and fired once per slot.

Every master looks for due schedules each liveness period; firing is one store transaction
that checks the slot is still unfired (see `gridrun.store.schedules`), so a slot makes one task
however many masters there are and whenever they restart. A master that was down over several
slots fires the first one it missed, once, then moves on to the next slot after now: a schedule
catches up, it does not replay a backlog.
"""

from __future__ import annotations

import dataclasses
import logging

from gridrun import cron
from gridrun.clock import Clock
from gridrun.master.core.admission import Admission
from gridrun.master.core.ids import new_task_id
from gridrun.master.core.signals import Signals
from gridrun.model import Schedule, Task, TaskSpec
from gridrun.spec import RESERVED_KEY_PREFIX
from gridrun.store import Firing, NewTask, ScheduleStore
from gridrun.store.schedules import DUE_BATCH

log = logging.getLogger("gridrun.master")


class Schedules:
    def __init__(
        self, store: ScheduleStore, clock: Clock, admission: Admission, signals: Signals
    ) -> None:
        self.store, self.clock, self.admission, self.signals = store, clock, admission, signals

    async def add(self, expr: str, spec: TaskSpec, name: str | None) -> Schedule:
        expr = cron.check(expr)
        now = self.clock.now_ms()
        schedule = Schedule(
            id=new_task_id(),
            cron=expr,
            spec=spec,
            created_at=now,
            next_at=cron.next_slot(expr, now),
            name=name,
        )
        return await self.store.add_schedule(schedule)

    async def all(self) -> list[Schedule]:
        return await self.store.list_schedules()

    async def get(self, schedule_id: str) -> Schedule:
        return await self.store.get_schedule(schedule_id)

    async def remove(self, schedule_id: str) -> Schedule:
        return await self.store.delete_schedule(schedule_id)

    async def fire_due(self) -> list[Task]:
        """Make the task of every schedule whose slot has come, a batch of them per
        transaction; count (and log) the slots a schedule skipped while no master fired it."""
        now = self.clock.now_ms()
        made: list[Task] = []
        while True:
            due = await self.store.due_schedules(now)
            specs = [
                dataclasses.replace(
                    schedule.spec,
                    idempotency_key=f"{RESERVED_KEY_PREFIX}{schedule.id}:{schedule.next_at}",
                    name=schedule.spec.name or schedule.name or f"schedule {schedule.id}",
                )
                for schedule in due
            ]
            # quotas hold for schedules as for submissions: a slot that would take its owner
            # or queue past what it may hold queued makes no task, and is counted
            room = await self.admission.room(specs) if specs else []
            firings = []
            for schedule, spec, why in zip(due, specs, room, strict=True):
                next_at = cron.next_slot(schedule.cron, now)
                new = NewTask(new_task_id(), spec) if why is None else None
                if why is not None:
                    self.signals.metrics.slots_over_quota.inc()
                    log.warning(
                        "schedule %s made no task for slot %d: %s", schedule.id,
                        schedule.next_at, why,
                    )  # fmt: skip
                firings.append(Firing(schedule.id, schedule.next_at, new, next_at))
            fired = await self.store.fire_schedules(firings, now) if firings else []
            for firing, task, schedule in zip(firings, fired, due, strict=True):
                if task is None:
                    continue
                made.append(task)
                log.info(
                    "schedule %s fired for slot %d: task %s", firing.schedule_id, firing.slot,
                    task.id, extra={"task_id": task.id},
                )  # fmt: skip
                skipped = skipped_slots(schedule.cron, firing.slot, firing.next_at)
                if skipped:
                    self.signals.metrics.slots_skipped.inc(skipped)
                    self.signals.metrics.slots_skipped_total += skipped
                    log.warning(
                        "schedule %s skipped %s slot(s) between %d and %d (no master fired"
                        " them in time); it fired once, for the first", firing.schedule_id,
                        f"{skipped}+" if skipped >= SKIP_COUNT_MAX else skipped,
                        firing.slot, firing.next_at,
                    )  # fmt: skip
            if len(due) < DUE_BATCH:
                break
        if made:
            self.signals.wake()
        return made


SKIP_COUNT_MAX = 1000  # slots skipped are counted up to this many per catch-up


def skipped_slots(expr: str, fired: int, next_at: int) -> int:
    """The slots strictly between the one fired and the next (what a catch-up passed over),
    counted up to SKIP_COUNT_MAX."""
    skipped, slot = 0, cron.next_slot(expr, fired)
    while slot < next_at and skipped < SKIP_COUNT_MAX:
        skipped += 1
        slot = cron.next_slot(expr, slot)
    return skipped
