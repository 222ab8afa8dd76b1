"""Workers: list them (with any quarantine), drain one."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gridrun.master.http.routes.common import (
    CONFLICT,
    AuditDep,
    Drainer,
    Reader,
    ServiceDep,
    StrictJsonRoute,
    TrustDep,
    peer,
)
from gridrun.master.http.schemas import WorkerListOut, WorkerOut

router = APIRouter(route_class=StrictJsonRoute, tags=["workers"])


@router.post(
    "/v1/workers/{worker_id}/drain", response_model=WorkerOut, status_code=202, responses=CONFLICT
)
async def drain(
    request: Request, worker_id: str, who: Drainer, service: ServiceDep, audit: AuditDep
) -> WorkerOut:
    """The worker takes nothing new, finishes its tasks, delivers their results, exits."""
    worker = await service.drain(worker_id)
    audit.record("worker.drain", who, peer(request), worker=worker_id)
    return WorkerOut.of(worker)


@router.get("/v1/workers", response_model=WorkerListOut)
async def workers(who: Reader, service: ServiceDep, trust: TrustDep) -> WorkerListOut:
    quarantined = trust.reason_for
    return WorkerListOut(
        workers=[WorkerOut.of(w, quarantined(w.id)) for w in await service.workers()]
    )
