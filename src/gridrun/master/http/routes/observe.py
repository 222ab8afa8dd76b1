"""Watching the grid: counts, who the caller is, the dashboard and its live overview,
Prometheus metrics, health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST

import gridrun
from gridrun.auth import Permission
from gridrun.errors import GridrunError
from gridrun.master.http.dashboard import WEB, history, overview_events
from gridrun.master.http.problems import problem
from gridrun.master.http.routes.common import (
    MetricsDep,
    Reader,
    RetentionDep,
    ServiceDep,
    StrictJsonRoute,
    event_stream,
)
from gridrun.master.http.schemas import HealthOut, HistoryOut, MeOut, Problem, StatsOut
from gridrun.model import TaskState, workers_by_state

router = APIRouter(route_class=StrictJsonRoute, tags=["observe"])


@router.get("/v1/stats", response_model=StatsOut, summary="Tasks per state, workers per state")
async def stats(who: Reader, service: ServiceDep, metrics: MetricsDep) -> StatsOut:
    counts = await service.count_by_state()
    workers = await service.workers()
    return StatsOut(
        tasks={state: counts.get(state, 0) for state in TaskState},
        workers=workers_by_state(workers),
        stale_reports_dropped=metrics.stale_reports_dropped(),
    )


@router.get("/v1/me", response_model=MeOut, summary="Who this token is and what it may do")
async def me(who: Reader) -> MeOut:
    return MeOut(
        name=who.name,
        role=str(who.role),
        permissions=sorted(str(p) for p in Permission if who.can(p)),
    )


@router.get(
    "/v1/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
    summary="The dashboard's overview (tasks and workers per state, slots, throughput),"
    " as Server-Sent Events every second",
)
async def events(who: Reader, service: ServiceDep, metrics: MetricsDep) -> StreamingResponse:
    return event_stream(overview_events(service, metrics))


@router.get(
    "/v1/history",
    response_model=HistoryOut,
    summary="The dashboard's charts: the grid sampled every step for the last hour (queue"
    " depth, running vs slots, finished and failed), and the latency and duration of what"
    " ended in it",
)
async def grid_history(who: Reader, service: ServiceDep, metrics: MetricsDep) -> HistoryOut:
    return await history(service, metrics)


@router.get("/", include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    summary="Prometheus metrics",
)
async def prometheus(
    who: Reader, service: ServiceDep, metrics: MetricsDep, retention: RetentionDep
) -> Response:
    workers = await service.workers()
    storage = await retention.storage()
    metrics.storage(storage, service.clock.now_ms(), retention.seconds_to_next())
    body = metrics.refresh(
        await service.count_by_state(), workers_by_state(workers), service.connected()
    )
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", response_model=HealthOut, responses={503: {"model": Problem}})
async def healthz(request: Request, service: ServiceDep, retention: RetentionDep) -> Any:
    try:
        await service.ping()
    except GridrunError as exc:  # the store cannot serve (unreachable, disk full, read-only)
        return problem(
            503, "Service unavailable", f"the store is not reachable or not ready: {exc.message}"
        )
    except Exception as exc:  # any other store failure also means not ready; say which
        return problem(503, "Service unavailable", f"the store is not reachable: {exc!r}")
    return HealthOut(
        status="ok",
        version=gridrun.__version__,
        workers_connected=service.connected(),
        warnings=[*request.app.state.warnings, *retention.warnings()],
    )
