"""Deleting ended tasks by hand (`gridrun gc`); the master also does it by itself
(`--retain` and the rest: gridrun.master.core.retention)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gridrun.errors import InvalidSpec
from gridrun.master.http.requests import GcIn
from gridrun.master.http.routes.common import (
    AuditDep,
    Collector,
    MetricsDep,
    Reader,
    RetentionDep,
    ServiceDep,
    StrictJsonRoute,
    peer,
)
from gridrun.master.http.schemas import GcOut, StorageOut, iso
from gridrun.model import TERMINAL, TaskState

router = APIRouter(route_class=StrictJsonRoute, tags=["retention"])


@router.post(
    "/v1/gc",
    response_model=GcOut,
    summary="Delete ended tasks (with their attempts and output) older than a time",
)
async def gc(
    request: Request, body: GcIn, who: Collector, retention: RetentionDep, audit: AuditDep
) -> GcOut:
    named = {str(s) for s in TERMINAL}
    if body.states is not None and not set(body.states) <= named:
        raise InvalidSpec("only ended tasks can be deleted: states " + ", ".join(sorted(named)))
    ended = [TaskState(s) for s in body.states] if body.states is not None else sorted(TERMINAL)
    deleted = await retention.collect(body.older_than_s, ended, dry_run=body.dry_run)
    if not body.dry_run:
        audit.record("task.gc", who, peer(request), deleted=deleted)
    return GcOut(deleted=deleted, dry_run=body.dry_run)


@router.get(
    "/v1/storage",
    response_model=StorageOut,
    summary="What the database holds and takes, and when retention next runs",
)
async def storage(
    who: Reader, service: ServiceDep, retention: RetentionDep, metrics: MetricsDep
) -> StorageOut:
    kept = await retention.storage()
    counts = await service.count_by_state()
    config = retention.config
    return StorageOut(
        db_bytes=kept.db_bytes,
        output_bytes=kept.output_bytes,
        file_bytes=kept.file_bytes,
        input_bytes=kept.input_bytes,
        tasks_kept=sum(counts.values()),
        oldest_task_at=iso(kept.oldest_task_ms),
        disk_used=kept.disk_used,
        next_retention_in_s=retention.seconds_to_next(),
        retain_s=config.retain_s,
        retain_failed_s=config.retain_failed_s or config.retain_s,
        output_budget=config.output_budget,
        schedule_slots_skipped=metrics.slots_skipped_total,
    )
