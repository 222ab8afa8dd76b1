"""The store's schedule verbs (`store.schedules`, one object over the backend): schedules and
firing them.

Firing a slot is one transaction: the schedule's row is locked, the slot checked to be still
the one to fire (another master, or this one before a restart, may have fired it), the task
inserted with the idempotency key `schedule:ID:SLOT`, and the next slot recorded. So each slot
makes its task exactly once, across masters and restarts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gridrun.errors import ScheduleNotFound
from gridrun.model import Schedule, Task
from gridrun.store import Firing, NewTask
from gridrun.store import queries as sql
from gridrun.store.relational_tx import Db, Tx
from gridrun.store.rows import spec_from_json, spec_to_json
from gridrun.store.task_steps import TaskSteps

DUE_BATCH = 500  # schedules fired per transaction


def schedule_from_row(row: Sequence[Any]) -> Schedule:
    return Schedule(
        id=row[0],
        name=row[1],
        cron=row[2],
        spec=spec_from_json(row[3]),
        created_at=row[4],
        next_at=row[5],
        last_fired=row[6],
        last_task=row[7],
        over_quota=int(row[8]),
    )


class ScheduleVerbs:
    def __init__(self, db: Db, steps: TaskSteps) -> None:
        self._db = db
        self._steps = steps

    async def add_schedule(self, schedule: Schedule) -> Schedule:
        row = (
            schedule.id, schedule.name, schedule.cron, spec_to_json(schedule.spec),
            schedule.created_at, schedule.next_at,
        )  # fmt: skip

        async def add(tx: Tx) -> None:
            if schedule.spec.concurrency is not None:  # its key's limit, checked or declared
                await self._steps.scope_keys(tx, [NewTask(schedule.id, schedule.spec)], False)
            await tx.run(sql.INSERT_SCHEDULE, *row)

        await self._db.write(add)
        return schedule

    async def list_schedules(self) -> list[Schedule]:
        async def read(tx: Tx) -> list[Schedule]:
            return [schedule_from_row(r) for r in await tx.all(sql.SELECT_SCHEDULES)]

        return await self._db.read(read)

    async def get_schedule(self, schedule_id: str) -> Schedule:
        async def read(tx: Tx) -> Schedule:
            row = await tx.one(sql.SELECT_SCHEDULE, schedule_id)
            if row is None:
                raise ScheduleNotFound(f"no schedule with id {schedule_id!r}")
            return schedule_from_row(row)

        return await self._db.read(read)

    async def delete_schedule(self, schedule_id: str) -> Schedule:
        async def delete(tx: Tx) -> Schedule:
            row = await tx.one(sql.SELECT_SCHEDULE + self._db.dialect.lock, schedule_id)
            if row is None:
                raise ScheduleNotFound(f"no schedule with id {schedule_id!r}")
            await tx.run(sql.DELETE_SCHEDULE, schedule_id)
            return schedule_from_row(row)

        return await self._db.write(delete)

    async def due_schedules(self, now: int) -> list[Schedule]:
        async def read(tx: Tx) -> list[Schedule]:
            rows = await tx.all(sql.SELECT_DUE_SCHEDULES, now, DUE_BATCH)
            return [schedule_from_row(r) for r in rows]

        return await self._db.read(read)

    async def fire_schedule(
        self, schedule_id: str, slot: int, task: NewTask, next_at: int, now: int
    ) -> Task | None:
        """Make `task` for the schedule's slot `slot` and move it on to `next_at`; None if
        that slot was already fired (or the schedule is gone)."""
        (made,) = await self.fire_schedules([Firing(schedule_id, slot, task, next_at)], now)
        return made

    async def fire_schedules(self, firings: Sequence[Firing], now: int) -> list[Task | None]:
        """`fire_schedule` for many, in one transaction (10,000 schedules due in one slot are
        20 commits, not 10,000)."""

        async def fire(tx: Tx) -> list[Task | None]:
            made: list[Task | None] = []
            for f in firings:
                row = await tx.one(sql.SELECT_SCHEDULE_SLOT + self._db.dialect.lock, f.schedule_id)
                if row is None or row[0] != f.slot:
                    made.append(None)
                    continue
                if f.task is None:  # over a quota: no task, the slot counted
                    await tx.run(sql.SKIP_SCHEDULE_SLOT, f.next_at, f.schedule_id)
                    made.append(None)
                    continue
                (task,) = await self._steps.insert(tx, [f.task], now, adopt_limits=True)
                await tx.run(sql.ADVANCE_SCHEDULE, f.next_at, f.slot, task.id, f.schedule_id)
                made.append(task)
            return made

        return await self._db.write(fire)
