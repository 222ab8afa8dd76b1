"""Tasks: submit one or a batch, list, read one (waiting for its end if asked), its output (as
JSON, raw bytes or live), cancel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response

from gridrun.errors import InvalidSpec
from gridrun.forms import parse_labels
from gridrun.master.http.follow import follow as follow_events
from gridrun.master.http.output_schemas import OutputOut, SegmentsOut, StreamOut
from gridrun.master.http.requests import BatchIn, TaskIn
from gridrun.master.http.routes.common import (
    CONFLICT,
    FULL,
    MAX_PAGE,
    MAX_WAIT_S,
    AuditDep,
    Canceller,
    JobsDep,
    Reader,
    ServiceDep,
    StrictJsonRoute,
    Submitter,
    TaskId,
    answer,
    audit_submit,
    check_owner,
    event_stream,
    json_body,
    parse,
    peer,
)
from gridrun.master.http.schemas import BatchOut, IdsOut, TaskListOut, TaskOut
from gridrun.model import TaskState
from gridrun.store import TaskFilter, TaskOrder

router = APIRouter(route_class=StrictJsonRoute, tags=["tasks"])


def _minimal(prefer: list[str] | None) -> bool:
    """RFC 7240: the client asked for a minimal answer (`Prefer: return=minimal`; preferences
    are separated by commas, their parameters by semicolons, and headers may repeat)."""
    return any(
        token.strip().replace(" ", "").lower() == "return=minimal"
        for header in prefer or ()
        for item in header.split(",")
        for token in item.split(";")
    )


@router.post(
    "/v1/tasks",
    status_code=201,
    response_model=TaskOut | BatchOut | IdsOut,
    responses={
        200: {
            "model": TaskOut | IdsOut,
            "description": "Its idempotency_key was taken: the task that holds it, as it is now",
        },
        **FULL,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/TaskIn"},
                            {"$ref": "#/components/schemas/BatchIn"},
                        ]
                    }
                }
            },
        }
    },
    summary='Submit one task, or {"tasks": [...]} (up to 10,000) in one transaction',
    description="The answer holds the tasks as stored; with the header"
    ' `Prefer: return=minimal`, only their ids (`{"ids": [...]}`), which is much'
    " smaller and quicker for large batches.",
)
async def submit(
    request: Request,
    response: Response,
    who: Submitter,
    service: ServiceDep,
    audit: AuditDep,
    prefer: Annotated[
        list[str] | None,
        Header(description="return=minimal: answer only the ids (RFC 7240)."),
    ] = None,
) -> TaskOut | BatchOut | IdsOut | Response:
    minimal = _minimal(prefer)
    body = await json_body(request)
    seal = service.seal
    if isinstance(body, dict) and "tasks" in body:
        batch = parse(BatchIn, body)
        specs = []
        for i, item in enumerate(batch.tasks):
            try:
                specs.append(item.to_spec(who.name, seal))
            except InvalidSpec as exc:
                raise InvalidSpec(f"tasks.{i}: {exc.message}") from None
        added = await service.submit(specs)
        audit_submit(request, audit, who, added)
        if minimal:
            return answer(IdsOut(ids=[t.id for t, _ in added]), 201, minimal=True)
        return answer(BatchOut(tasks=[TaskOut.of(t) for t, _ in added]), 201)
    if not isinstance(body, dict):
        raise InvalidSpec('the body must be a JSON object: a task, or {"tasks": [...]}')
    one = parse(TaskIn, body)
    added = await service.submit([one.to_spec(who.name, seal)])
    audit_submit(request, audit, who, added)
    ((task, created),) = added
    status = 201 if created else 200  # same idempotency key: the existing task, as it is now
    if minimal:
        return answer(IdsOut(ids=[task.id]), status, minimal=True)
    response.status_code = status
    return TaskOut.of(task)


@router.get("/v1/tasks", response_model=TaskListOut)
async def list_tasks(
    who: Reader,
    service: ServiceDep,
    jobs: JobsDep,
    state: Annotated[list[TaskState] | None, Query()] = None,
    worker: str | None = None,
    name: str | None = None,
    job: str | None = None,
    index: Annotated[
        int | None, Query(ge=0, description="(with job) its task at this index.")
    ] = None,
    owner: str | None = None,
    queue: str | None = None,
    label: Annotated[
        list[str] | None,
        Query(description="k=v: tasks whose labels include it; repeat for several."),
    ] = None,
    since: Annotated[
        str | None,
        Query(
            description="Created at or after this time (ISO 8601; UTC without a zone).",
            examples=["2026-12-07T06:00:00Z"],
        ),
    ] = None,
    until: Annotated[str | None, Query(description="Created before this time (as since).")] = None,
    sort: Annotated[
        TaskOrder,
        Query(
            description="created: newest first, in pages. duration, cpu, memory: the top"
            " `limit` of all that match, largest first (no cursor).",
        ),
    ] = "created",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
) -> TaskListOut | Response:
    labels = parse_labels(label or [])  # 422 for anything but k=v
    if job is not None:
        job = await jobs.resolve(job)  # (a short id made whole)
    if index is not None and job is None:
        raise InvalidSpec("index names a task of a job: give job too")
    if cursor is not None and sort != "created":
        raise InvalidSpec("a cursor pages a listing by creation only (sort=created)")
    page = await service.list_tasks(
        TaskFilter(
            states=state or (),
            worker_id=worker,
            name=name,
            labels=labels,
            job=job,
            job_index=index,
            owner=owner,
            queue=queue,
            since=_epoch_ms(since, "since"),
            until=_epoch_ms(until, "until"),
        ),
        limit,
        int(cursor) if cursor else None,
        sort,
    )
    listing = TaskListOut(
        tasks=[TaskOut.of(t) for t in page.tasks],
        next_cursor=str(page.next_cursor) if page.next_cursor is not None else None,
    )
    return answer(listing, 200)


def _epoch_ms(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidSpec(f"{what} {text!r} is not an ISO 8601 time (2026-12-07T06:00Z)") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # (a time without a zone is UTC, as the CLI shows times)
    return round(at.timestamp() * 1000)


@router.get("/v1/tasks/{task_id}", response_model=TaskOut)
async def get_task(
    who: Reader,
    service: ServiceDep,
    task_id: TaskId,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_S,
            description="Wait up to this many seconds for the task to end before answering.",
        ),
    ] = 0,
) -> TaskOut:
    task = await service.wait(task_id, wait) if wait else await service.get(task_id)
    return TaskOut.of(task, await service.attempts(task_id))


@router.get(
    "/v1/tasks/{task_id}/output",
    response_model=OutputOut,
    responses={200: {"content": {"application/octet-stream": {}, "text/event-stream": {}}}},
    summary="Output as JSON, one stream's raw bytes with ?stream=stdout|stderr, or live"
    " with ?follow=true",
)
async def get_output(
    who: Reader,
    service: ServiceDep,
    task_id: TaskId,
    stream: Annotated[str | None, Query(pattern="^(stdout|stderr)$")] = None,
    follow: Annotated[
        bool,
        Query(
            description="Server-Sent Events until the task ends: `state`, `output`"
            " (stream, offset, text), `gap` (bytes dropped before they could be sent),"
            " then `end`."
        ),
    ] = False,
    stdout_from: Annotated[
        int, Query(ge=0, description="With follow: resume stdout at this byte offset.")
    ] = 0,
    stderr_from: Annotated[
        int, Query(ge=0, description="With follow: resume stderr at this byte offset.")
    ] = 0,
    encoding: Annotated[
        Literal["text", "base64"],
        Query(
            description="With follow: `text` (UTF-8, an invalid byte shown as U+FFFD), or"
            " `base64`: each output event carries `data`, the bytes exactly."
        ),
    ] = "text",
) -> Any:
    task = await service.get(task_id)
    if follow:
        raw = encoding == "base64"
        return event_stream(follow_events(service, task_id, stdout_from, stderr_from, raw))
    out = await service.output(task_id)
    if stream is not None:
        chosen = out.stdout if stream == "stdout" else out.stderr
        return Response(
            chosen.data,
            media_type="application/octet-stream",
            headers={
                "X-Gridrun-Bytes-Total": str(chosen.total),
                "X-Gridrun-Bytes-Dropped": str(chosen.dropped),
                "X-Gridrun-State": str(task.state),
            },
        )
    return OutputOut(
        task_id=task_id,
        state=task.state,
        stdout=StreamOut.of(out.stdout),
        stderr=StreamOut.of(out.stderr),
    )


@router.get(
    "/v1/tasks/{task_id}/output/segments",
    response_model=SegmentsOut,
    summary="Output of both streams in the order it was written, a segment per run",
)
async def get_segments(
    who: Reader,
    service: ServiceDep,
    task_id: TaskId,
    tail: Annotated[
        int | None, Query(ge=0, le=1_000_000, description="Only the last N lines.")
    ] = None,
) -> SegmentsOut:
    """Each segment is a run of one stream with when the worker read it; together they are
    the kept output in write order (as the worker read its two pipes). Output of a worker
    that does not mark its runs comes as all of stdout, then all of stderr."""
    task = await service.get(task_id)
    return SegmentsOut.of(task, await service.output(task_id), tail)


@router.post("/v1/tasks/{task_id}/cancel", response_model=TaskOut, responses=CONFLICT)
async def cancel(
    request: Request, task_id: TaskId, who: Canceller, service: ServiceDep, audit: AuditDep
) -> TaskOut:
    """Admins cancel any task; a submit token cancels the tasks it submitted."""

    async def owner() -> str | None:
        return (await service.get(task_id)).spec.submitted_by

    await check_owner(request, who, audit, "cancel", f"task {task_id}", owner)
    task = await service.cancel(task_id)
    audit.record("task.cancel", who, peer(request), task=task_id, state=str(task.state))
    return TaskOut.of(task)
