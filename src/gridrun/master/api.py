"""The HTTP edge (FastAPI): routes under /v1, the article's POST /tasks, /healthz.

Translates JSON <-> domain and maps every error once to application/problem+json. Bodies are
bounded before they are parsed; nothing a client sends reaches the service unvalidated. Each
route names the permission it needs; `Access` says who the caller is and whether they have it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

import gridrun
from gridrun.auth import Permission, Principal
from gridrun.errors import (
    BadRequest,
    Forbidden,
    GridrunError,
    InvalidSpec,
    TaskNotFound,
)
from gridrun.master.access import Access
from gridrun.master.dashboard import WEB, overview_events
from gridrun.master.follow import follow as follow_events
from gridrun.master.guard import AllowedHosts, BrowserGuard
from gridrun.master.problems import (
    PROBLEM,
    BodyLimit,
    error_problem,
    problem,
    validation_errors,
)
from gridrun.master.schedules import Schedules
from gridrun.master.schemas import (
    BatchIn,
    BatchOut,
    HealthOut,
    IdsOut,
    JobOut,
    LegacyTaskIn,
    LegacyTaskOut,
    MeOut,
    OutputOut,
    Problem,
    ScheduleIn,
    ScheduleListOut,
    ScheduleOut,
    StatsOut,
    StreamOut,
    TaskIn,
    TaskListOut,
    TaskOut,
    WorkerListOut,
    WorkerOut,
)
from gridrun.master.service import Service
from gridrun.model import Task, TaskState, workers_by_state
from gridrun.spec import make_spec, parse_labels
from gridrun.store import TaskFilter

CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": Problem}}  # a state that forbids it
MAX_WAIT_S = 60.0
MAX_PAGE = 1000
AUDIT_IDS = 100  # task ids named in one audit line; every task also records its submitter


def _answer(body: BaseModel, status: int, *, minimal: bool = False) -> Response:
    """A large answer, serialized once: FastAPI would dump, validate and serialize it again
    (its response_model still documents it)."""
    headers = {"Preference-Applied": "return=minimal"} if minimal else None
    return Response(
        body.model_dump_json(), status_code=status, media_type="application/json", headers=headers
    )


def _minimal(prefer: list[str] | None) -> bool:
    """RFC 7240: the client asked for a minimal answer (`Prefer: return=minimal`; preferences
    are separated by commas, their parameters by semicolons, and headers may repeat)."""
    return any(
        token.strip().replace(" ", "").lower() == "return=minimal"
        for header in prefer or ()
        for item in header.split(",")
        for token in item.split(";")
    )


async def _json_body(request: Request) -> Any:
    """The body as JSON, read by orjson: strict UTF-8 (a lone surrogate such as "\\ud800" is
    refused, never stored) and at most 1024 levels deep (no recursion error on absurd nesting)."""
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


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
            _peer(request),
            f"{request.method} {request.url.path}",
        )

    return Depends(caller)


Reader = Annotated[Principal, _allowed(Permission.READ)]
Submitter = Annotated[Principal, _allowed(Permission.SUBMIT)]
Canceller = Annotated[Principal, _allowed(Permission.CANCEL_OWN)]
Drainer = Annotated[Principal, _allowed(Permission.DRAIN)]


def _peer(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "unknown"


def _secret_names(created: list[Task]) -> dict[str, list[str]]:
    """The names of the first task's secret_env, for the audit log (never their values)."""
    secrets = created[0].spec.secrets if created else None
    return {"secret_env": list(secrets.names)} if secrets else {}


def _event_stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    """Server-Sent Events, unbuffered by caches and proxies."""
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _problems_documented(spec: dict[str, Any]) -> None:
    """Say what error bodies really are: application/problem+json, not application/json."""
    for operation in (op for ops in spec["paths"].values() for op in ops.values()):
        for status, response in operation["responses"].items():
            content = response.get("content", {})
            if int(status) >= 400 and "application/json" in content:
                content[PROBLEM] = content.pop("application/json")


def create_api(
    service: Service,
    access: Access,
    *,
    max_body: int,
    warnings: list[str] | None = None,
    schedules: Schedules | None = None,
    allowed_hosts: AllowedHosts | None = None,
) -> FastAPI:
    app = FastAPI(
        title="gridrun",
        version=gridrun.__version__,
        description="Run commands on a fleet of workers: submit, follow, cancel.",
        responses={
            400: {"model": Problem},
            401: {"model": Problem},
            403: {"model": Problem},
            404: {"model": Problem},
            413: {"model": Problem},
            415: {"model": Problem},
            422: {"model": Problem},
            503: {"model": Problem},
            507: {"model": Problem},
        },
    )
    app.add_middleware(BodyLimit, limit=max_body)
    app.add_middleware(BrowserGuard, allowed_hosts=allowed_hosts or AllowedHosts())
    health_warnings = list(warnings or [])
    seal = service.sealer.seal
    app.state.access = access
    audit = access.audit

    @app.exception_handler(GridrunError)
    async def domain_error(request: Request, exc: GridrunError) -> JSONResponse:
        return error_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        return problem(422, "Invalid request", "; ".join(errors), errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = problem(
            exc.status_code, str(exc.detail), f"{request.method} {request.url.path}: {exc.detail}"
        )
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # Allow: every method of the path, not one route's
            path = request.url.path
            methods = {m for r in app.routes if isinstance(r, APIRoute) and r.path_regex.match(path)
                       for m in r.methods or ()}  # fmt: skip
            response.headers["Allow"] = ", ".join(sorted(methods))
        return response

    def parse(
        model: type[TaskIn] | type[BatchIn] | type[LegacyTaskIn] | type[ScheduleIn], body: Any
    ) -> Any:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            errors = validation_errors(exc)
            raise InvalidSpec("; ".join(errors)) from None

    @app.post(
        "/v1/tasks",
        status_code=201,
        response_model=TaskOut | BatchOut | IdsOut,
        responses={
            200: {
                "model": TaskOut | IdsOut,
                "description": "Its idempotency_key was taken: the task"
                " that holds it, as it is now",
            }
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
        prefer: Annotated[
            list[str] | None,
            Header(description="return=minimal: answer only the ids (RFC 7240)."),
        ] = None,
    ) -> TaskOut | BatchOut | IdsOut | Response:
        minimal = _minimal(prefer)
        body = await _json_body(request)
        if isinstance(body, dict) and "tasks" in body:
            batch: BatchIn = parse(BatchIn, body)
            specs = []
            for i, item in enumerate(batch.tasks):
                try:
                    specs.append(item.to_spec(who.name, seal))
                except InvalidSpec as exc:
                    raise InvalidSpec(f"tasks.{i}: {exc.message}") from None
            added = await service.submit(specs)
            audit_submit(request, who, added)
            if minimal:
                return _answer(IdsOut(ids=[t.id for t, _ in added]), 201, minimal=True)
            return _answer(BatchOut(tasks=[TaskOut.of(t) for t, _ in added]), 201)
        if not isinstance(body, dict):
            raise InvalidSpec('the body must be a JSON object: a task, or {"tasks": [...]}')
        one: TaskIn = parse(TaskIn, body)
        added = await service.submit([one.to_spec(who.name, seal)])
        audit_submit(request, who, added)
        ((task, created),) = added
        status = 201 if created else 200  # same idempotency key: the existing task, as it is now
        if minimal:
            return _answer(IdsOut(ids=[task.id]), status, minimal=True)
        response.status_code = status
        return TaskOut.of(task)

    @app.post("/v1/jobs", status_code=201, response_model=JobOut, responses=CONFLICT)
    async def broadcast(request: Request, who: Submitter) -> JobOut:
        """Run one command once on every live worker matching `labels` and `on` (and able to
        hold what it asks): one task per worker, grouped as a job. 409 if none matches."""
        one: TaskIn = parse(TaskIn, await _json_body(request))
        job, tasks = await service.broadcast(one.to_spec(who.name, seal))
        audit_submit(request, who, [(t, True) for t in tasks])
        return JobOut(id=job, tasks=[TaskOut.of(t) for t in tasks])

    @app.get("/v1/jobs/{job_id}", response_model=JobOut)
    async def get_job(who: Reader, job_id: str) -> JobOut:
        """A job's tasks, one per worker, as they are now."""
        page = await service.list_tasks(TaskFilter(job=job_id), MAX_PAGE, None)
        if not page.tasks:
            raise TaskNotFound(f"no job with id {job_id!r}")
        return JobOut(id=job_id, tasks=[TaskOut.of(t) for t in reversed(page.tasks)])

    cron_schedules = schedules or Schedules(service)

    @app.post("/v1/schedules", status_code=201, response_model=ScheduleOut)
    async def add_schedule(request: Request, who: Submitter) -> ScheduleOut:
        """Make this task on a cron schedule (UTC), once per slot, until the schedule is
        removed. The body is a task with `cron`."""
        body: ScheduleIn = parse(ScheduleIn, await _json_body(request))
        spec = body.to_spec(who.name, seal)
        schedule = await cron_schedules.add(body.cron, spec, body.name)
        audit.record("schedule.add", who, _peer(request), schedule=schedule.id, cron=schedule.cron)
        return ScheduleOut.of(schedule)

    @app.get("/v1/schedules", response_model=ScheduleListOut)
    async def list_schedules(who: Reader) -> ScheduleListOut:
        return ScheduleListOut(schedules=[ScheduleOut.of(s) for s in await cron_schedules.all()])

    @app.get("/v1/schedules/{schedule_id}", response_model=ScheduleOut)
    async def get_schedule(who: Reader, schedule_id: str) -> ScheduleOut:
        return ScheduleOut.of(await cron_schedules.get(schedule_id))

    @app.delete("/v1/schedules/{schedule_id}", response_model=ScheduleOut)
    async def remove_schedule(request: Request, schedule_id: str, who: Canceller) -> ScheduleOut:
        """Admins remove any schedule; a submit token removes the schedules it added. Tasks
        it already made are not touched."""
        if not who.can(Permission.CANCEL_ANY):
            owner = (await cron_schedules.get(schedule_id)).spec.submitted_by
            if owner != who.name:
                audit.record("auth.forbidden", who, _peer(request), call="unschedule")
                raise Forbidden(
                    f"schedule {schedule_id} was added by another token; only it or an admin"
                    " may remove it"
                )
        schedule = await cron_schedules.remove(schedule_id)
        audit.record("schedule.remove", who, _peer(request), schedule=schedule_id)
        return ScheduleOut.of(schedule)

    def audit_submit(request: Request, who: Principal, added: list[tuple[Task, bool]]) -> None:
        created = [task for task, new in added if new]
        audit.record(
            "task.submit",
            who,
            _peer(request),
            tasks=len(created),
            ids=[task.id for task in created[:AUDIT_IDS]],
            cmd=created[0].spec.cmd or " ".join(created[0].spec.argv) if created else None,
            existing=len(added) - len(created),
            **_secret_names(created),
        )

    @app.get("/v1/tasks", response_model=TaskListOut)
    async def list_tasks(
        who: Reader,
        state: Annotated[list[TaskState] | None, Query()] = None,
        worker: str | None = None,
        name: str | None = None,
        job: str | None = None,
        label: Annotated[
            list[str] | None,
            Query(description="k=v: tasks whose labels include it; repeat for several."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
    ) -> TaskListOut | Response:
        labels = parse_labels(label or [])  # 422 for anything but k=v
        page = await service.list_tasks(
            TaskFilter(states=state or (), worker_id=worker, name=name, labels=labels, job=job),
            limit,
            int(cursor) if cursor else None,
        )
        listing = TaskListOut(
            tasks=[TaskOut.of(t) for t in page.tasks],
            next_cursor=str(page.next_cursor) if page.next_cursor is not None else None,
        )
        return _answer(listing, 200)

    @app.get("/v1/tasks/{task_id}", response_model=TaskOut)
    async def get_task(
        who: Reader,
        task_id: str,
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

    @app.get(
        "/v1/tasks/{task_id}/output",
        response_model=OutputOut,
        responses={200: {"content": {"application/octet-stream": {}, "text/event-stream": {}}}},
        summary="Output as JSON, one stream's raw bytes with ?stream=stdout|stderr, or live"
        " with ?follow=true",
    )
    async def get_output(
        who: Reader,
        task_id: str,
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
    ) -> Any:
        task = await service.get(task_id)
        if follow:
            return _event_stream(follow_events(service, task_id, stdout_from, stderr_from))
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

    @app.post("/v1/tasks/{task_id}/cancel", response_model=TaskOut, responses=CONFLICT)
    async def cancel(request: Request, task_id: str, who: Canceller) -> TaskOut:
        """Admins cancel any task; a submit token cancels the tasks it submitted."""
        if not who.can(Permission.CANCEL_ANY):
            owner = (await service.get(task_id)).spec.submitted_by
            if owner != who.name:
                audit.record("auth.forbidden", who, _peer(request), call="cancel", task=task_id)
                raise Forbidden(
                    f"task {task_id} was submitted by another token; only its"
                    " submitter or an admin may cancel it"
                )
        task = await service.cancel(task_id)
        audit.record("task.cancel", who, _peer(request), task=task_id, state=str(task.state))
        return TaskOut.of(task)

    @app.post(
        "/v1/workers/{worker_id}/drain",
        response_model=WorkerOut,
        status_code=202,
        responses=CONFLICT,
    )
    async def drain(request: Request, worker_id: str, who: Drainer) -> WorkerOut:
        """The worker takes nothing new, finishes its tasks, delivers their results, exits."""
        worker = await service.drain(worker_id)
        audit.record("worker.drain", who, _peer(request), worker=worker_id)
        return WorkerOut.of(worker)

    @app.get("/v1/workers", response_model=WorkerListOut)
    async def workers(who: Reader) -> WorkerListOut:
        return WorkerListOut(
            workers=[
                WorkerOut.of(w, service.trust.quarantine_reason(w.id))
                for w in await service.workers()
            ]
        )

    @app.get("/v1/stats", response_model=StatsOut, summary="Tasks per state, workers per state")
    async def stats(who: Reader) -> StatsOut:
        counts = await service.count_by_state()
        workers = await service.workers()
        return StatsOut(
            tasks={state: counts.get(state, 0) for state in TaskState},
            workers=workers_by_state(workers),
            stale_reports_dropped=service.metrics.stale_reports_dropped(),
        )

    @app.get("/v1/me", response_model=MeOut, summary="Who this token is and what it may do")
    async def me(who: Reader) -> MeOut:
        return MeOut(
            name=who.name,
            role=str(who.role),
            permissions=sorted(str(p) for p in Permission if who.can(p)),
        )

    @app.get(
        "/v1/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
        summary="The dashboard's overview (tasks and workers per state, slots, throughput),"
        " as Server-Sent Events every second",
    )
    async def events(who: Reader) -> StreamingResponse:
        return _event_stream(overview_events(service))

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
        summary="Prometheus metrics",
    )
    async def metrics(who: Reader) -> Response:
        workers = await service.workers()
        body = service.metrics.refresh(
            await service.count_by_state(),
            workers_by_state(workers),
            len(service.sessions),
        )
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", response_model=HealthOut, responses={503: {"model": Problem}})
    async def healthz() -> Any:
        try:
            await service.ping()
        except GridrunError as exc:  # the store cannot serve (unreachable, disk full, read-only)
            return problem(
                503,
                "Service unavailable",
                f"the store is not reachable or not ready: {exc.message}",
            )
        except Exception as exc:  # any other store failure also means not ready; say which
            return problem(503, "Service unavailable", f"the store is not reachable: {exc!r}")
        return HealthOut(
            status="ok",
            version=gridrun.__version__,
            workers_connected=len(service.sessions),
            warnings=health_warnings,
        )

    @app.post("/tasks", response_model=LegacyTaskOut, summary="The article's endpoint")
    async def legacy_submit(request: Request, who: Submitter) -> LegacyTaskOut:
        body: LegacyTaskIn = parse(LegacyTaskIn, await _json_body(request))
        added = await service.submit([make_spec(cmd=body.cmd, submitted_by=who.name)])
        audit_submit(request, who, added)
        ((task, _),) = added
        return LegacyTaskOut(id=task.id, state=task.state)

    def openapi() -> dict[str, Any]:
        """FastAPI's spec plus the request bodies we parse by hand (for a clear error per task)
        and the media type of errors."""
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in (TaskIn, BatchIn, LegacyTaskIn):
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            spec["paths"]["/tasks"]["post"]["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/LegacyTaskIn"}}
                },
            }
            _problems_documented(spec)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
