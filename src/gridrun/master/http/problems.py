"""Error answers of the HTTP API (RFC 9457 problem details) and the request-body bound: the
pieces every route and middleware share."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gridrun.errors import BadRequest, GridrunError, PayloadTooLarge, RangeNotSatisfiable
from gridrun.master.http.schemas import Problem

PROBLEM = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str,
    errors: list[str] | None = None,
    error: type[GridrunError] | None = None,
) -> JSONResponse:
    """A problem document; `type` names the error's class where there is one, so the SDK maps
    it back to that class."""
    body = Problem(
        type=error.type_uri() if error is not None else "about:blank",
        title=title,
        status=status,
        detail=detail,
        errors=errors,
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM)


def error_problem(exc: GridrunError) -> JSONResponse:
    """The answer for a domain error: its status and message, and the headers that status
    calls for (Retry-After on 503 and 507, WWW-Authenticate on 401, Content-Range on 416)."""
    response = problem(exc.status, exc.title, exc.message, error=type(exc))
    if exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(exc.retry_after_s)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="gridrun"'
    if isinstance(exc, RangeNotSatisfiable) and exc.size is not None:
        response.headers["Content-Range"] = f"bytes */{exc.size}"
    return response


def validation_errors(exc: ValidationError | RequestValidationError) -> list[str]:
    messages = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        messages.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return messages


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, limit: int, streamed: str = "/v1/inputs/") -> None:
        self.app = app
        self.limit = limit
        self.streamed = streamed  # a route that streams its body and bounds it itself

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            scope.get("method") == "PUT" and scope.get("path", "").startswith(self.streamed)
        ):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.limit or declared < 0:
                    error = PayloadTooLarge if declared > self.limit else BadRequest
                    response = problem(
                        error.status,
                        error.title,
                        f"request bodies are limited to {self.limit} bytes"
                        if declared > self.limit
                        else "invalid Content-Length",
                        error=error,
                    )
                    await response(scope, receive, send)
                    return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise PayloadTooLarge(f"request bodies are limited to {self.limit} bytes")
            return message

        await self.app(scope, bounded, send)
