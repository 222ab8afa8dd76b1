"""Deleting ended tasks by hand (`gridrun gc`); the master also does it by itself
(`--retain`, `--retain-failed`: Service.retention)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gridrun.errors import InvalidSpec
from gridrun.master.routes.common import AuditDep, Collector, ServiceDep, peer
from gridrun.master.schemas import GcIn, GcOut
from gridrun.model import TERMINAL, TaskState

router = APIRouter(tags=["retention"])


@router.post(
    "/v1/gc",
    response_model=GcOut,
    summary="Delete ended tasks (with their attempts and output) older than a time",
)
async def gc(
    request: Request, body: GcIn, who: Collector, service: ServiceDep, audit: AuditDep
) -> GcOut:
    named = {str(s) for s in TERMINAL}
    if body.states is not None and not set(body.states) <= named:
        raise InvalidSpec("only ended tasks can be deleted: states " + ", ".join(sorted(named)))
    ended = [TaskState(s) for s in body.states] if body.states is not None else sorted(TERMINAL)
    deleted = await service.collect(body.older_than_s, ended, dry_run=body.dry_run)
    if not body.dry_run:
        audit.record("task.gc", who, peer(request), deleted=deleted)
    return GcOut(deleted=deleted, dry_run=body.dry_run)
