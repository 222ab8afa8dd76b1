"""Jobs: one command once on every live worker that matches (a broadcast), and reading one."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gridrun.errors import JobNotFound
from gridrun.master.http.requests import TaskIn
from gridrun.master.http.routes.common import (
    CONFLICT,
    FULL,
    MAX_PAGE,
    AuditDep,
    Reader,
    ServiceDep,
    StrictJsonRoute,
    Submitter,
    audit_submit,
    json_body,
    parse,
)
from gridrun.master.http.schemas import JobOut, TaskOut
from gridrun.store import TaskFilter

router = APIRouter(route_class=StrictJsonRoute, tags=["jobs"])


@router.post("/v1/jobs", status_code=201, response_model=JobOut, responses={**CONFLICT, **FULL})
async def broadcast(
    request: Request, who: Submitter, service: ServiceDep, audit: AuditDep
) -> JobOut:
    """Run one command once on every live worker matching `labels` and `on` (and able to
    hold what it asks): one task per worker, grouped as a job. 409 if none matches."""
    one = parse(TaskIn, await json_body(request))
    job, tasks = await service.broadcast(one.to_spec(who.name, service.seal))
    audit_submit(request, audit, who, [(t, True) for t in tasks])
    return JobOut(id=job, tasks=[TaskOut.of(t) for t in tasks])


@router.get("/v1/jobs/{job_id}", response_model=JobOut)
async def get_job(who: Reader, service: ServiceDep, job_id: str) -> JobOut:
    """A job's tasks, one per worker, as they are now."""
    page = await service.list_tasks(TaskFilter(job=job_id), MAX_PAGE, None)
    expired = await service.expired_count(job_id)
    if not page.tasks and not expired:
        raise JobNotFound(f"no job with id {job_id!r}")
    tasks = [TaskOut.of(t) for t in reversed(page.tasks)]
    return JobOut(id=job_id, tasks=tasks, expired=expired)
