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
from gridrun.master.service import Service, new_task_id
from gridrun.model import Schedule, Task, TaskSpec
from gridrun.store import NewTask

log = logging.getLogger("gridrun.master")


class Schedules:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.store = service.store
        self.clock = service.clock

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
        """Make the task of every schedule whose slot has come."""
        now = self.clock.now_ms()
        made = []
        for schedule in await self.store.due_schedules(now):
            slot = schedule.next_at
            spec = dataclasses.replace(
                schedule.spec,
                idempotency_key=f"schedule:{schedule.id}:{slot}",
                name=schedule.spec.name or schedule.name or f"schedule {schedule.id}",
            )
            task = await self.store.fire_schedule(
                schedule.id, slot, NewTask(new_task_id(), spec), cron.next_slot(schedule.cron, now),
                now,
            )  # fmt: skip
            if task is not None:
                log.info(
                    "schedule %s fired for slot %d: task %s", schedule.id, slot, task.id,
                    extra={"task_id": task.id},
                )  # fmt: skip
                made.append(task)
        if made:
            self.service.dispatch_wanted.set()
        return made
