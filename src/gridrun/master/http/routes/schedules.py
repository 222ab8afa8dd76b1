"""Schedules: tasks made on a cron schedule (UTC), once per slot, until removed."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gridrun.errors import InvalidSpec
from gridrun.master.http.requests import ScheduleIn
from gridrun.master.http.routes.common import (
    AuditDep,
    Canceller,
    Reader,
    SchedulesDep,
    ServiceDep,
    StrictJsonRoute,
    Submitter,
    check_owner,
    json_body,
    parse,
    peer,
)
from gridrun.master.http.schemas import ScheduleListOut, ScheduleOut

router = APIRouter(route_class=StrictJsonRoute, tags=["schedules"])


@router.post("/v1/schedules", status_code=201, response_model=ScheduleOut)
async def add_schedule(
    request: Request,
    who: Submitter,
    service: ServiceDep,
    schedules: SchedulesDep,
    audit: AuditDep,
) -> ScheduleOut:
    """Make this task on a cron schedule (UTC), once per slot, until the schedule is
    removed. The body is a task with `cron`."""
    body = parse(ScheduleIn, await json_body(request))
    spec = body.to_spec(who.name, service.seal)
    if spec.inputs:  # (its slots would outlive the upload: unused inputs go after an hour)
        raise InvalidSpec("a schedule takes no inputs; collect globs are fine")
    schedule = await schedules.add(body.cron, spec, body.name)
    audit.record("schedule.add", who, peer(request), schedule=schedule.id, cron=schedule.cron)
    return ScheduleOut.of(schedule)


@router.get("/v1/schedules", response_model=ScheduleListOut)
async def list_schedules(who: Reader, schedules: SchedulesDep) -> ScheduleListOut:
    return ScheduleListOut(schedules=[ScheduleOut.of(s) for s in await schedules.all()])


@router.get("/v1/schedules/{schedule_id}", response_model=ScheduleOut)
async def get_schedule(who: Reader, schedules: SchedulesDep, schedule_id: str) -> ScheduleOut:
    return ScheduleOut.of(await schedules.get(schedule_id))


@router.delete("/v1/schedules/{schedule_id}", response_model=ScheduleOut)
async def remove_schedule(
    request: Request,
    schedule_id: str,
    who: Canceller,
    schedules: SchedulesDep,
    audit: AuditDep,
) -> ScheduleOut:
    """Admins remove any schedule; a submit token removes the schedules it added. Tasks it
    already made are not touched."""

    async def owner() -> str | None:
        return (await schedules.get(schedule_id)).spec.submitted_by

    await check_owner(request, who, audit, "remove", f"schedule {schedule_id}", owner)
    schedule = await schedules.remove(schedule_id)
    audit.record("schedule.remove", who, peer(request), schedule=schedule_id)
    return ScheduleOut.of(schedule)
