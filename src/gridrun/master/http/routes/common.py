"""What every route shares: the objects it works with (as FastAPI dependencies read from the
app's state, set once by `create_api`), who the caller is and what it may do, reading and
validating bodies, answering large bodies, and the audit of submissions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Path, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

from gridrun.auth import Permission, Principal
from gridrun.errors import BadRequest, Forbidden, InvalidSpec
from gridrun.master.core.access import Access
from gridrun.master.core.allocator import Allocator
from gridrun.master.core.audit import Audit
from gridrun.master.core.files import Files
from gridrun.master.core.jobs import Jobs
from gridrun.master.core.metrics import Metrics
from gridrun.master.core.retention import Retention
from gridrun.master.core.schedules import Schedules
from gridrun.master.core.service import Service
from gridrun.master.core.trust import Trust
from gridrun.master.http.problems import validation_errors
from gridrun.master.http.schemas import Problem
from gridrun.model import Task

CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": Problem}}  # a state that forbids it
# what a submission may be answered besides: the grid, an owner or a queue holds too many
FULL: dict[int | str, dict[str, Any]] = {
    429: {"model": Problem, "description": "Too many tasks queued (the grid's limit or a quota)"}
}
MAX_WAIT_S = 60.0
MAX_PAGE = 1000
AUDIT_IDS = 100  # task ids named in one audit line; every task also records its submitter
M = TypeVar("M", bound=BaseModel)


def _state(name: str) -> Callable[[Request], Any]:
    """A dependency: the object `create_api` put on the app's state under this name."""

    def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    return get


def _audit(request: Request) -> Audit:
    access: Access = request.app.state.access
    return access.audit


ServiceDep = Annotated[Service, Depends(_state("service"))]
JobsDep = Annotated[Jobs, Depends(_state("jobs"))]
SchedulesDep = Annotated[Schedules, Depends(_state("schedules"))]
RetentionDep = Annotated[Retention, Depends(_state("retention"))]
MetricsDep = Annotated[Metrics, Depends(_state("metrics"))]
TrustDep = Annotated[Trust, Depends(_state("trust"))]
AllocatorDep = Annotated[Allocator, Depends(_state("allocator"))]
FilesDep = Annotated[Files, Depends(_state("files"))]
AuditDep = Annotated[Audit, Depends(_audit)]


async def _task_id(request: Request, task_id: Annotated[str, Path()]) -> str:
    service: Service = request.app.state.service
    return await service.resolve(task_id)


async def _job_id(request: Request, job_id: Annotated[str, Path()]) -> str:
    jobs: Jobs = request.app.state.jobs
    return await jobs.resolve(job_id)


# a path's task or job id, whole, or a short id (a unique prefix or tail of 6+ digits: 409 if
# several have it) made whole
TaskId = Annotated[str, Depends(_task_id)]
JobId = Annotated[str, Depends(_job_id)]

_bearer = HTTPBearer(
    auto_error=False,
    description="A token made by `gridrun token create` (required when the master has tokens"
    " configured).",
)


def _allowed(permission: Permission) -> Any:
    """A dependency: the caller's principal, if it holds `permission` (else 401/403)."""

    async def caller(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        access: Access = request.app.state.access
        return access.caller(
            credentials.credentials if credentials else None,
            permission,
            peer(request),
            f"{request.method} {request.url.path}",
        )

    return Depends(caller)


Reader = Annotated[Principal, _allowed(Permission.READ)]
Submitter = Annotated[Principal, _allowed(Permission.SUBMIT)]
Canceller = Annotated[Principal, _allowed(Permission.CANCEL_OWN)]
Drainer = Annotated[Principal, _allowed(Permission.DRAIN)]
QuotaSetter = Annotated[Principal, _allowed(Permission.QUOTAS)]
Collector = Annotated[Principal, _allowed(Permission.GC)]
Allocating = Annotated[Principal, _allowed(Permission.ALLOCATE)]


def peer(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "unknown"


async def check_owner(
    request: Request,
    who: Principal,
    audit: Audit,
    call: str,
    thing: str,
    owner: Callable[[], Awaitable[str | None]],
) -> None:
    """Admins may `call` anything; a submit token only what it made (403 otherwise). `owner`
    is read only when the caller is not an admin."""
    if who.can(Permission.CANCEL_ANY) or await owner() == who.name:
        return
    audit.record("auth.forbidden", who, peer(request), call=call, target=thing)
    raise Forbidden(f"{thing} was made by another token; only that token or an admin may {call} it")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BadRequest(f"the body names {key!r} twice in one object: give each once")
            seen.add(key)
    return obj


def refuse_duplicate_keys(raw: bytes) -> None:
    """BadRequest (400) for a JSON body with a key twice in one object: parsers disagree on
    which one wins (ours took the last, silently), so a proxy or an audit that reads the first
    would see another request than the one run. (About 1 us a task of a batch.)"""
    try:
        json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError):
        return  # not JSON, or nested past what the route's parser takes: it says so


class StrictJsonRoute(APIRoute):
    """Every route's JSON body is checked for duplicate keys before the route reads it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            if request.method in ("POST", "PUT", "PATCH") and "json" in request.headers.get(
                "content-type", ""
            ):
                refuse_duplicate_keys(await request.body())  # (the route reads it again: cached)
            return await handler(request)

        return strict


async def json_body(request: Request) -> Any:
    """The body as JSON, read by orjson: strict UTF-8 (a lone surrogate such as "\\ud800" is
    refused, never stored) and at most 1024 levels deep (no recursion error on absurd nesting)."""
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


def parse(model: type[M], body: Any) -> M:
    """A body validated as `model`; an InvalidSpec (422) naming every field that is wrong."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = validation_errors(exc)
        raise InvalidSpec("; ".join(errors)) from None


def answer(body: BaseModel, status: int, *, minimal: bool = False) -> Response:
    """A large answer, serialized once: FastAPI would dump, validate and serialize it again
    (its response_model still documents it)."""
    headers = {"Preference-Applied": "return=minimal"} if minimal else None
    return Response(
        body.model_dump_json(), status_code=status, media_type="application/json", headers=headers
    )


def event_stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    """Server-Sent Events, unbuffered by caches and proxies."""
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def audit_submit(
    request: Request, audit: Audit, who: Principal, added: list[tuple[Task, bool]]
) -> None:
    created = [task for task, new in added if new]
    secrets = created[0].spec.secrets if created else None
    audit.record(
        "task.submit",
        who,
        peer(request),
        tasks=len(created),
        ids=[task.id for task in created[:AUDIT_IDS]],
        cmd=created[0].spec.cmd or " ".join(created[0].spec.argv) if created else None,
        existing=len(added) - len(created),
        # the names of its secret_env, never their values
        **({"secret_env": list(secrets.names)} if secrets else {}),
    )
