"""What `Client` and `AsyncClient` share, so the two differ only in `await`: how a connection
is configured, how a request body and query are built, how an error answer becomes the
error's own class, and how a server-sent event stream is read."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from gridrun import model
from gridrun.client.settings import resolve
from gridrun.client.types import SubmitOptions
from gridrun.errors import ClientError, GridrunError, NotFound, error_for

TERMINAL = frozenset(str(state) for state in model.TERMINAL)
LONG_POLL_S = 30.0
FOLLOW_READ_TIMEOUT_S = 60.0  # the master sends a keep-alive every 15 s
EXTRA_WAIT_S = 30.0  # a long poll's read timeout: the wait itself plus this


def connection(
    url: str | None, token: str | None, ca: str | Path | None, timeout: float
) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """The master's URL, warnings about the settings, and the keyword arguments of an
    httpx.Client / httpx.AsyncClient for it."""
    settings = resolve(url, token, ca)
    verify: ssl.SSLContext | bool = True
    if settings.ca is not None:
        try:
            verify = ssl.create_default_context(cafile=str(settings.ca))
        except (OSError, ssl.SSLError) as exc:
            raise ClientError(f"cannot use {settings.ca} as the CA certificate: {exc}") from None
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else None
    http = {"base_url": settings.url, "timeout": timeout, "verify": verify, "headers": headers}
    return settings.url, settings.warnings, http


def transport_error(url: str, exc: httpx.TransportError) -> ClientError:
    """What went wrong on the way to the master, and what to do about it."""
    if isinstance(exc, httpx.TimeoutException):
        return ClientError(f"the master at {url} did not answer in time")
    reason = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in reason:
        return ClientError(
            f"the master at {url} has a TLS certificate this client does not trust: set"
            " GRIDRUN_CA (or `ca` in ~/.config/gridrun/config.toml) to the CA that signed it"
            " (`gridrun certs init` wrote it as ca.crt)"
        )
    if "WRONG_VERSION_NUMBER" in reason:
        return ClientError(f"the master at {url} does not speak TLS: use an http:// URL")
    return ClientError(
        f"cannot reach the master at {url} ({reason}): is one running? `gridrun up` starts a"
        " local grid (`make up` in a checkout); --url or GRIDRUN_URL names another"
    )


def older_master(url: str, path: str, master_version: str | None) -> NotFound:
    """A call the master does not know: most likely a master older than this client."""
    from gridrun import __version__

    of = f"version {master_version}" if master_version else "an unknown version"
    return NotFound(
        f"the master at {url} ({of}) does not know {path}: it is older than this client"
        f" ({__version__}); upgrade the master"
    )


def is_unknown_route(error: GridrunError) -> bool:
    """A 404 for the path itself (not for a task, worker, schedule or job it names)."""
    return type(error) is NotFound


def error_from(response: httpx.Response) -> GridrunError:
    """The error an answer of 400 or more stands for: the class its problem `type` names
    (TaskNotFound, WorkerNotFound, InvalidSpec, ...), else one for its status code."""
    type_uri = None
    try:
        body = response.json()
        detail = str(body.get("detail") or body.get("title"))
        type_uri = body.get("type")
    except (ValueError, AttributeError):
        detail = response.text[:500] or response.reason_phrase
    cls = error_for(type_uri if isinstance(type_uri, str) else None, response.status_code)
    if cls is not None:
        return cls(detail)
    error = GridrunError(f"HTTP {response.status_code}: {detail}")
    error.status = response.status_code
    return error


def submit_body(cmd: str | None, options: SubmitOptions) -> dict[str, Any]:
    """One task as POST /v1/tasks takes it: the options given, as JSON values."""
    body: dict[str, Any] = {} if cmd is None else {"cmd": cmd}
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, Sequence) and not isinstance(value, str):
            value = list(value)
        body[key] = value
    return body


def list_params(
    states: Sequence[str], limit: int, cursor: str | None, **filters: str | None
) -> list[tuple[str, str | int]]:
    """The query of GET /v1/tasks; `filters`: worker, name, owner, queue, job, since, until,
    sort."""
    params: list[tuple[str, str | int]] = [("limit", limit)]
    params += [("state", state) for state in states]
    for key, value in (*filters.items(), ("cursor", cursor)):
        if value:
            params.append((key, value))
    return params


def wait_params(wait_s: float) -> dict[str, Any]:
    """The query and timeout of a GET that waits up to `wait_s` for the task to end."""
    return {
        "params": {"wait": wait_s} if wait_s else None,
        "timeout": httpx.Timeout(wait_s + EXTRA_WAIT_S),
    }


def follow_request(
    client: httpx.Client | httpx.AsyncClient, stdout_from: int, stderr_from: int, raw: bool
) -> dict[str, Any]:
    """The query and timeout of a followed output stream (`raw`: bytes, base64 in `data`)."""
    params = {"follow": "true", "stdout_from": stdout_from, "stderr_from": stderr_from}
    if raw:
        params["encoding"] = "base64"
    return {
        "params": params,
        "timeout": httpx.Timeout(client.timeout.connect, read=FOLLOW_READ_TIMEOUT_S),
    }


class EventReader:
    """Server-sent events, line by line: `feed` gives (event, data) when a data line ends one."""

    def __init__(self) -> None:
        self.event = "message"

    def feed(self, line: str) -> Iterator[tuple[str, dict[str, Any]]]:
        if line.startswith("event:"):
            self.event = line[6:].strip()
        elif line.startswith("data:"):
            yield self.event, json.loads(line[5:])
        elif not line:
            self.event = "message"

    def read(self, lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        for line in lines:
            yield from self.feed(line)


def array_body(
    task: Mapping[str, Any],
    array: str | None,
    items: Sequence[str] | None,
    commands: Sequence[str] | None,
) -> dict[str, Any]:
    """POST /v1/arrays's body: the template and what makes its tasks."""
    body: dict[str, Any] = {"task": dict(task)}
    for key, value in (("array", array), ("items", items), ("commands", commands)):
        if value is not None:
            body[key] = value if isinstance(value, str) else list(value)
    return body


UPLOAD_PIECE = 1 << 20  # bytes an input's upload reads and sends at a time


def file_pieces(path: Path) -> Iterator[bytes]:
    """A file's bytes as an upload's body, a piece at a time (never all of it in memory)."""
    with open(path, "rb") as f:
        while piece := f.read(UPLOAD_PIECE):
            yield piece


def file_path(task_id: str, path: str) -> str:
    return f"/v1/tasks/{quote(task_id, safe='')}/files/{quote(path)}"


OCTETS = {"Content-Type": "application/octet-stream"}
