"""Jobs: an array (many tasks of one template, one durable submission), a broadcast (one
command once on every live worker that matches); each read, listed, cancelled and retried as
one; and tasks cancelled by a filter in one request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from gridrun.arrays import parse_array
from gridrun.auth import Permission, Principal
from gridrun.errors import Forbidden, InvalidSpec, JobNotFound
from gridrun.forms import parse_labels
from gridrun.master.http.job_schemas import (
    ArrayOut,
    CancelledOut,
    CellsOut,
    JobListOut,
    JobOut,
    RetriedOut,
)
from gridrun.master.http.requests import ArrayIn, CancelIn, RetryJobIn, TaskIn
from gridrun.master.http.routes.common import (
    CONFLICT,
    FULL,
    MAX_PAGE,
    AuditDep,
    Canceller,
    JobId,
    JobsDep,
    Reader,
    ServiceDep,
    StrictJsonRoute,
    Submitter,
    audit_submit,
    check_owner,
    json_body,
    parse,
    peer,
)
from gridrun.master.http.schemas import TaskOut
from gridrun.model import ACTIVE, Task, TaskState
from gridrun.store import TaskFilter

router = APIRouter(route_class=StrictJsonRoute, tags=["jobs"])
MAX_CELLS = 10_000


@router.post("/v1/jobs", status_code=201, response_model=JobOut, responses={**CONFLICT, **FULL})
async def broadcast(
    request: Request, who: Submitter, service: ServiceDep, jobs: JobsDep, audit: AuditDep
) -> JobOut:
    """Run one command once on every live worker matching `labels` and `on` (and able to
    hold what it asks): one task per worker, grouped as a job. 409 if none matches."""
    one = parse(TaskIn, await json_body(request))
    job, tasks = await service.broadcast(one.to_spec(who.name, service.seal))
    audit_submit(request, audit, who, [(t, True) for t in tasks])
    return JobOut.of(await jobs.summary(job), [TaskOut.of(t) for t in tasks])


@router.post("/v1/arrays", status_code=201, response_model=ArrayOut, responses=FULL)
async def submit_array(
    request: Request, who: Submitter, service: ServiceDep, jobs: JobsDep, audit: AuditDep
) -> ArrayOut:
    """An array job: one task per index (`array`, Slurm's syntax, `%N` capping how many run
    at once), per item, or per command, each given GRIDRUN_ARRAY_INDEX (and its item in
    GRIDRUN_ARRAY_ITEM). Stored in one transaction: all of it, or none (an error)."""
    body = parse(ArrayIn, await json_body(request))
    array = parse_array(body.array) if body.array is not None else None
    base, commands = body.specs(who.name, service.seal)
    job, size = await jobs.submit_array(base, array, body.items, commands)
    audit.record(
        "job.submit", who, peer(request), job=job, tasks=size, cmd=base.cmd or " ".join(base.argv)
    )
    return ArrayOut(id=job, size=size)


@router.get("/v1/jobs", response_model=JobListOut)
async def list_jobs(
    who: Reader,
    jobs: JobsDep,
    owner: Annotated[str | None, Query(description="Only this owner's jobs.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
) -> JobListOut:
    """The newest jobs first, each with its counts per state."""
    return JobListOut(jobs=[JobOut.of(j, []) for j in await jobs.list_jobs(limit, owner)])


@router.get("/v1/jobs/{job_id}", response_model=JobOut)
async def get_job(
    who: Reader,
    service: ServiceDep,
    jobs: JobsDep,
    job_id: JobId,
    tasks: Annotated[bool, Query(description="List its tasks (the first 1,000).")] = True,
) -> JobOut:
    """A job as a whole: counts per state, progress, its unsuccessful tasks by index."""
    expired = await service.expired_count(job_id)
    try:
        job = await jobs.summary(job_id)
    except JobNotFound:
        if not expired:
            raise
        return JobOut(id=job_id, expired=expired)
    listed: list[TaskOut] = []
    if tasks:
        page = await service.list_tasks(TaskFilter(job=job_id), MAX_PAGE, None)
        listed = [TaskOut.of(t) for t in reversed(page.tasks)]
    return JobOut.of(job, listed, expired)


@router.get("/v1/jobs/{job_id}/cells", response_model=CellsOut)
async def job_cells(
    who: Reader,
    jobs: JobsDep,
    job_id: JobId,
    limit: Annotated[int, Query(ge=1, le=MAX_CELLS)] = MAX_CELLS,
) -> CellsOut:
    """Each task's state, by index (the first `limit`): the dashboard's matrix of the job."""
    job = await jobs.summary(job_id, 0)
    cells = await jobs.cells(job_id, limit)
    return CellsOut(
        ids=[c[0] for c in cells],
        indexes=[c[1] for c in cells],
        states=[c[2] for c in cells],
        more=max(0, job.size - len(cells)),
    )


@router.post("/v1/jobs/{job_id}/cancel", response_model=CancelledOut)
async def cancel_job(
    request: Request, job_id: JobId, who: Canceller, jobs: JobsDep, audit: AuditDep
) -> CancelledOut:
    """Cancel every task of the job that has not ended (admins: any job; a submit token: its
    own)."""
    job = await jobs.summary(job_id, 0)

    async def owner() -> str | None:
        return job.first.spec.submitted_by

    await check_owner(request, who, audit, "cancel", f"job {job_id}", owner)
    return _cancelled(request, who, audit, await jobs.cancel(TaskFilter(job=job_id)), job_id)


@router.post("/v1/jobs/{job_id}/retry", response_model=RetriedOut, responses=FULL)
async def retry_job(
    request: Request, job_id: JobId, who: Canceller, jobs: JobsDep, audit: AuditDep
) -> RetriedOut:
    """Run the job's failed, timed-out, lost and cancelled tasks again (or those in `states`),
    each as a new attempt, within the quotas (429 past them). Its own or, for admins, any."""
    raw = await request.body()
    given = parse(RetryJobIn, await json_body(request)) if raw.strip() else RetryJobIn()
    job = await jobs.summary(job_id, 0)

    async def owner() -> str | None:
        return job.first.spec.submitted_by

    await check_owner(request, who, audit, "retry", f"job {job_id}", owner)
    if not who.can(Permission.SUBMIT):
        raise Forbidden("running tasks again takes a token that may submit")
    states = [TaskState(s) for s in given.states] if given.states else None
    _, again = await jobs.rerun(job_id, states) if states else await jobs.rerun(job_id)
    audit.record("job.retry", who, peer(request), job=job_id, tasks=len(again))
    return RetriedOut(retried=len(again))


@router.post("/v1/tasks/cancel", response_model=CancelledOut, responses=CONFLICT)
async def cancel_matching(
    request: Request, who: Canceller, jobs: JobsDep, audit: AuditDep
) -> CancelledOut:
    """Cancel every task that matches the filter and has not ended, in one step. A submit
    token cancels only its own (its `owner`, which it may leave out); an admin any owner's.
    An empty filter is refused: say what to cancel."""
    given = parse(CancelIn, await json_body(request))
    owner = given.owner
    if not who.can(Permission.CANCEL_ANY):
        if owner is not None and owner != who.name:
            audit.record("auth.forbidden", who, peer(request), call="cancel", target=owner)
            raise Forbidden(f"tasks of {owner} are another token's; only an admin may cancel them")
        owner = who.name
    flt = TaskFilter(
        states=[TaskState(s) for s in given.state],
        owner=owner,
        queue=given.queue,
        job=given.job,
        labels=parse_labels(given.label),
        name=given.name,
        worker_id=given.worker,
    )
    said = (given.state, given.owner, given.queue, given.job, given.label, given.name, given.worker)
    if not any(said) and not given.all:
        raise InvalidSpec("say which tasks to cancel (state, queue, job, label, name, worker)")
    return _cancelled(request, who, audit, await jobs.cancel(flt), given.job)


def _cancelled(
    request: Request, who: Principal, audit: AuditDep, found: list[Task], job: str | None
) -> CancelledOut:
    stopping = sum(t.state in ACTIVE for t in found)
    audit.record(
        "task.cancel", who, peer(request), tasks=len(found), job=job, ids=[t.id for t in found[:20]]
    )
    return CancelledOut(cancelled=len(found) - stopping, stopping=stopping)
