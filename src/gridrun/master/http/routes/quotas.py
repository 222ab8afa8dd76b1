"""A shared grid's limits: quotas per owner and per queue (set while it runs), and what each
owner and queue holds."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request

from gridrun.dispatching import Quota
from gridrun.master.http.requests import ConcurrencyKeyIn, QuotaIn
from gridrun.master.http.routes.common import (
    AuditDep,
    QuotaSetter,
    Reader,
    ServiceDep,
    StrictJsonRoute,
    peer,
)
from gridrun.master.http.schemas import (
    ConcurrencyKeyListOut,
    ConcurrencyKeyOut,
    OwnerListOut,
    OwnerOut,
    QuotaListOut,
    QuotaOut,
)
from gridrun.spec import check_concurrency_key, check_name

router = APIRouter(route_class=StrictJsonRoute, tags=["quotas"])


@router.get("/v1/quotas", response_model=QuotaListOut, summary="The quotas set")
async def quotas(who: Reader, service: ServiceDep) -> QuotaListOut:
    return QuotaListOut(quotas=[QuotaOut(**vars_of(q)) for q in await service.quotas()])


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


MAX_KEYS_LISTED = 10_000


@router.get("/v1/concurrency", response_model=ConcurrencyKeyListOut, summary="The concurrency keys")
async def concurrency_keys(who: Reader, service: ServiceDep) -> ConcurrencyKeyListOut:
    rows = await service.concurrency_keys(MAX_KEYS_LISTED)
    return ConcurrencyKeyListOut(
        keys=[ConcurrencyKeyOut(key=k, owner=scope or None, limit=n) for scope, k, n in rows]
    )


@router.put(
    "/v1/concurrency/{key:path}",
    response_model=ConcurrencyKeyOut,
    summary="Declare a grid-wide concurrency key (shared by every owner) with its limit",
)
async def set_grid_key(
    request: Request,
    key: str,
    body: ConcurrencyKeyIn,
    who: QuotaSetter,
    service: ServiceDep,
    audit: AuditDep,
) -> ConcurrencyKeyOut:
    check_concurrency_key(key)
    await service.set_grid_key(key, body.limit)
    audit.record("concurrency.set", who, peer(request), key=key, limit=body.limit)
    return ConcurrencyKeyOut(key=key, owner=None, limit=body.limit)


@router.delete(
    "/v1/concurrency/{key:path}",
    status_code=204,
    summary="Remove a grid-wide concurrency key: its name is each owner's own again",
)
async def remove_grid_key(
    request: Request, key: str, who: QuotaSetter, service: ServiceDep, audit: AuditDep
) -> None:
    check_concurrency_key(key)
    await service.set_grid_key(key, None)
    audit.record("concurrency.remove", who, peer(request), key=key)


@router.get("/v1/owners", response_model=OwnerListOut, summary="Tasks queued and running per owner")
async def owners(who: Reader, service: ServiceDep) -> OwnerListOut:
    return OwnerListOut(
        owners=[
            OwnerOut(owner=o, queue=q, queued=queued, assigned=assigned, running=running)
            for o, q, queued, assigned, running in await service.owners()
        ]
    )


def vars_of(quota: Quota) -> dict[str, str | int | None]:
    return {
        "scope": quota.scope,
        "name": quota.name,
        "max_queued": quota.max_queued,
        "max_running": quota.max_running,
    }
