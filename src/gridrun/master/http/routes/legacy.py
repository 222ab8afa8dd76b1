"""The article's HTTP endpoint, served unchanged: `POST /tasks {"cmd": "..."}` (its gRPC
`core.NodeService` is gridrun.master.wire.compat)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gridrun.master.http.requests import LegacyTaskIn
from gridrun.master.http.routes.common import (
    FULL,
    AuditDep,
    ServiceDep,
    StrictJsonRoute,
    Submitter,
    audit_submit,
    json_body,
    parse,
)
from gridrun.master.http.schemas import LegacyTaskOut
from gridrun.spec import make_spec

router = APIRouter(route_class=StrictJsonRoute, tags=["the article"])


@router.post(
    "/tasks",
    response_model=LegacyTaskOut,
    summary="The article's endpoint",
    responses=FULL,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/LegacyTaskIn"}}
            },
        }
    },
)
async def legacy_submit(
    request: Request, who: Submitter, service: ServiceDep, audit: AuditDep
) -> LegacyTaskOut:
    """`{"cmd": "..."}`, split like a shell would; answered with the task's id and state."""
    body = parse(LegacyTaskIn, await json_body(request))
    added = await service.submit([make_spec(cmd=body.cmd, submitted_by=who.name)])
    audit_submit(request, audit, who, added)
    ((task, _),) = added
    return LegacyTaskOut(id=task.id, state=task.state)
