"""Allocation queues (admin): workers brought up through the cluster's scheduler as queued work
needs them (see gridrun.master.core.allocator)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gridrun.allocating import AllocQueue
from gridrun.master.http.alloc_schemas import (
    AllocationOut,
    AllocQueueIn,
    AllocQueueListOut,
    AllocQueueOut,
    DryRunIn,
    DryRunOut,
    check_queue_name,
)
from gridrun.master.http.routes.common import (
    CONFLICT,
    Allocating,
    AllocatorDep,
    AuditDep,
    StrictJsonRoute,
    peer,
)

router = APIRouter(route_class=StrictJsonRoute, tags=["allocation queues"])


@router.get("/v1/alloc/queues", response_model=AllocQueueListOut, summary="The allocation queues")
async def list_queues(who: Allocating, allocator: AllocatorDep) -> AllocQueueListOut:
    return AllocQueueListOut(
        queues=[AllocQueueOut.of(q, len(active)) for q, active in await allocator.overview()]
    )


@router.post(
    "/v1/alloc/queues",
    response_model=AllocQueueOut,
    status_code=201,
    responses=CONFLICT,
    summary="Add an allocation queue (after a dry run the scheduler accepts, unless dry_run is"
    " false)",
)
async def add_queue(
    request: Request, body: AllocQueueIn, who: Allocating, allocator: AllocatorDep,
    audit: AuditDep,
) -> AllocQueueOut:  # fmt: skip
    name = check_queue_name(body.name)
    queue = AllocQueue(name, body.to_config(), created_at=allocator.clock.now_ms())
    added = await allocator.add(queue, dry_run=body.dry_run)
    audit.record("alloc.added", who, peer(request), queue=name, backend=queue.config.backend)
    return AllocQueueOut.of(added, 0, [])


@router.post(
    "/v1/alloc/dry-run",
    response_model=DryRunOut,
    summary="Submit a held test allocation and cancel it: what the scheduler says (422 when it"
    " refuses)",
)
async def dry_run(body: DryRunIn, who: Allocating, allocator: AllocatorDep) -> DryRunOut:
    return DryRunOut(ok=True, message=await allocator.dry_run("dry-run", body.to_config()))


@router.get(
    "/v1/alloc/queues/{name}",
    response_model=AllocQueueOut,
    summary="A queue with its allocations (newest first), their states and workers",
)
async def queue_info(name: str, who: Allocating, allocator: AllocatorDep) -> AllocQueueOut:
    queue, allocations, online = await allocator.info(name)
    shown = [AllocationOut.of(a, online.get(a.id, 0)) for a in allocations]
    return AllocQueueOut.of(queue, sum(a.state.active for a in allocations), shown)


async def _paused(
    request: Request, name: str, paused: bool, who: Allocating, allocator: AllocatorDep,
    audit: AuditDep,
) -> AllocQueueOut:  # fmt: skip
    queue = await allocator.set_paused(name, paused)
    audit.record("alloc.paused" if paused else "alloc.resumed", who, peer(request), queue=name)
    active = [a for q, mine in await allocator.overview() if q.name == name for a in mine]
    return AllocQueueOut.of(queue, len(active))


@router.post("/v1/alloc/queues/{name}/pause", response_model=AllocQueueOut, summary="Pause a queue")
async def pause(
    request: Request, name: str, who: Allocating, allocator: AllocatorDep, audit: AuditDep
) -> AllocQueueOut:
    return await _paused(request, name, True, who, allocator, audit)


@router.post(
    "/v1/alloc/queues/{name}/resume",
    response_model=AllocQueueOut,
    summary="Resume a queue (its failures forgotten)",
)
async def resume(
    request: Request, name: str, who: Allocating, allocator: AllocatorDep, audit: AuditDep
) -> AllocQueueOut:
    return await _paused(request, name, False, who, allocator, audit)


@router.delete(
    "/v1/alloc/queues/{name}",
    status_code=204,
    summary="Remove a queue, cancelling the allocations it started",
)
async def remove(
    request: Request, name: str, who: Allocating, allocator: AllocatorDep, audit: AuditDep
) -> Response:
    _, cancelled = await allocator.remove(name)
    audit.record("alloc.removed", who, peer(request), queue=name, cancelled=cancelled)
    return Response(status_code=204)
