"""A shared grid's limits: quotas per owner and per queue (set while it runs), and what each
owner and queue holds."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request

from gridrun.master.routes.common import AuditDep, QuotaSetter, Reader, ServiceDep, peer
from gridrun.master.schemas import (
    OwnerListOut,
    OwnerOut,
    QuotaIn,
    QuotaListOut,
    QuotaOut,
)
from gridrun.spec import check_name
from gridrun.store import Quota

router = APIRouter(tags=["quotas"])


@router.get("/v1/quotas", response_model=QuotaListOut, summary="The quotas set")
async def quotas(who: Reader, service: ServiceDep) -> QuotaListOut:
    return QuotaListOut(quotas=[QuotaOut(**vars_of(q)) for q in await service.store.quotas()])


@router.put(
    "/v1/quotas/{scope}/{name}",
    response_model=QuotaOut,
    summary="Set the quota of an owner or a queue (no limit given: removed); applies at once",
)
async def set_quota(
    request: Request,
    scope: Literal["owner", "queue"],
    name: str,
    body: QuotaIn,
    who: QuotaSetter,
    service: ServiceDep,
    audit: AuditDep,
) -> QuotaOut:
    check_name(scope, name)
    quota = Quota(scope, name, body.max_queued, body.max_running)
    await service.set_quota(quota)
    audit.record("quota.set", who, peer(request), **vars_of(quota))
    return QuotaOut(**vars_of(quota))


@router.get("/v1/owners", response_model=OwnerListOut, summary="Tasks queued and running per owner")
async def owners(who: Reader, service: ServiceDep) -> OwnerListOut:
    return OwnerListOut(
        owners=[
            OwnerOut(owner=o, queue=q, queued=queued, running=running)
            for o, q, queued, running in await service.store.owners()
        ]
    )


def vars_of(quota: Quota) -> dict[str, str | int | None]:
    return {
        "scope": quota.scope,
        "name": quota.name,
        "max_queued": quota.max_queued,
        "max_running": quota.max_running,
    }
