"""The HTTP edge (FastAPI): assembles the routers of `gridrun.master.http.routes` (tasks, jobs,
schedules, workers, observe) and the article's `POST /tasks` (`routes.legacy`) behind the browser
guard and the body limit, and maps every error once to application/problem+json.

Bodies are bounded before they are parsed; nothing a client sends reaches the service
unvalidated. Each route names the permission it needs; `Access` says who the caller is and
whether they have it. The objects the routes use live in the app's state, set here once.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import gridrun
from gridrun.errors import GridrunError, InvalidSpec, NotFound
from gridrun.master.core.access import Access
from gridrun.master.core.wiring import Core
from gridrun.master.http.dashboard import WEB
from gridrun.master.http.guard import AllowedHosts, BrowserGuard
from gridrun.master.http.problems import (
    PROBLEM,
    BodyLimit,
    error_problem,
    problem,
    validation_errors,
)
from gridrun.master.http.requests import BatchIn, LegacyTaskIn, TaskIn
from gridrun.master.http.routes import (
    allocations,
    files,
    jobs,
    legacy,
    observe,
    quotas,
    retention,
    tasks,
    workers,
)
from gridrun.master.http.routes import schedules as schedule_routes
from gridrun.master.http.schemas import Problem

ERROR_STATUSES = (400, 401, 403, 404, 413, 415, 422, 503, 507)


def _problems_documented(spec: dict[str, Any]) -> None:
    """Say what error bodies really are: application/problem+json, not application/json."""
    for operation in (op for ops in spec["paths"].values() for op in ops.values()):
        for status, response in operation["responses"].items():
            content = response.get("content", {})
            if int(status) >= 400 and "application/json" in content:
                content[PROBLEM] = content.pop("application/json")


def create_api(
    core: Core,
    access: Access,
    *,
    max_body: int,
    warnings: list[str] | None = None,
    allowed_hosts: AllowedHosts | None = None,
) -> FastAPI:
    app = FastAPI(
        title="gridrun",
        version=gridrun.__version__,
        description="Run commands on a fleet of workers: submit, follow, cancel.",
        responses={status: {"model": Problem} for status in ERROR_STATUSES},
        # FastAPI's pages load their scripts from a CDN, which the master's CSP (and an
        # offline host) blocks: /docs is ours, plain HTML from the spec (see api_reference)
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, limit=max_body)
    app.add_middleware(BrowserGuard, allowed_hosts=allowed_hosts or AllowedHosts())
    # what the routes call (see routes.common): the use cases, and the parts they show
    app.state.service = core.service
    app.state.jobs = core.jobs
    app.state.schedules = core.schedules
    app.state.retention = core.retention
    app.state.metrics = core.metrics
    app.state.trust = core.trust
    app.state.allocator = core.allocator
    app.state.files = core.files
    app.state.access = access
    app.state.warnings = list(warnings or [])

    @app.exception_handler(GridrunError)
    async def domain_error(request: Request, exc: GridrunError) -> JSONResponse:
        return error_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        return problem(422, "Invalid request", "; ".join(errors), errors, error=InvalidSpec)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = problem(
            exc.status_code,
            str(exc.detail),
            f"{request.method} {request.url.path}: {exc.detail}",
            error=NotFound if exc.status_code == 404 else None,
        )
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # Allow: every method of the path, not one route's
            path = request.url.path
            methods = {m for r in app.routes if isinstance(r, APIRoute) and r.path_regex.match(path)
                       for m in r.methods or ()}  # fmt: skip
            response.headers["Allow"] = ", ".join(sorted(methods))
        return response

    for module in (
        tasks, jobs, schedule_routes, workers, quotas, retention, allocations, files, observe,
        legacy,
    ):  # fmt: skip
        app.include_router(module.router)
    app.include_router(files.uploads)
    app.mount("/static", StaticFiles(directory=WEB), name="static")

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
            components = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in (TaskIn, BatchIn, LegacyTaskIn):
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(schema.pop("$defs", {}))
                components[model.__name__] = schema
            _problems_documented(spec)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    async def docs() -> HTMLResponse:
        return HTMLResponse(api_reference(app.openapi()))

    return app


def api_reference(spec: dict[str, Any]) -> str:
    """The API as one page of plain HTML (no script, nothing fetched): every operation with
    its summary, and the whole spec at /openapi.json for tools."""
    rows = []
    for path, operations in sorted(spec["paths"].items()):
        for method, op in operations.items():
            summary = op.get("summary") or op.get("description", "").split("\n")[0]
            rows.append(
                f"<tr><td><code>{escape(method.upper())}</code></td>"
                f"<td><code>{escape(path)}</code></td><td>{escape(summary)}</td></tr>"
            )
    title = escape(f"{spec['info']['title']} {spec['info']['version']} API")
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>"
        "<link rel=stylesheet href=/static/app.css></head><body><main>"
        f"<h1>{title}</h1><p>The whole specification, for clients and tools:"
        " <a href=/openapi.json>/openapi.json</a> (OpenAPI 3). Errors are"
        " <code>application/problem+json</code>.</p>"
        "<table><thead><tr><th>method</th><th>path</th><th>what it does</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></main></body></html>"
    )
