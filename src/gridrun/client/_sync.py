"""The synchronous client. Answers are the API's JSON, typed as TypedDicts."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NotRequired, TypedDict, cast

import httpx

from gridrun import model
from gridrun.client.settings import DEFAULT_URL, resolve
from gridrun.errors import ClientError, GridrunError, error_for

__all__ = ["DEFAULT_URL", "Client"]
TERMINAL = frozenset(str(state) for state in model.TERMINAL)
LONG_POLL_S = 30.0
FOLLOW_READ_TIMEOUT_S = 60.0  # the master sends a keep-alive every 15 s


class AttemptDict(TypedDict):
    attempt: int
    worker_id: str
    state: str
    assigned_at: str
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    signal: int | None
    error: str | None


class TaskDict(TypedDict):
    id: str
    name: str | None
    state: str
    cmd: str | None
    argv: list[str]
    shell: bool
    env: dict[str, str]
    secret_env: list[str]  # names only
    cwd: str | None
    timeout_s: float | None
    priority: int
    labels: dict[str, str]
    attempt: int
    worker_id: str | None
    cancel_requested: bool
    created_at: str
    assigned_at: str | None
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    signal: int | None
    error: str | None
    max_attempts: int
    queue_timeout_s: float | None
    idempotency_key: str | None
    submitted_by: str | None
    retry_at: str | None
    on: str | None
    cpu: float
    memory_mb: int
    gpus: int
    after: list[str]
    job: str | None
    pinned_worker: str | None
    task_class: str | None
    placement: str
    unschedulable: str | None
    attempts: list[AttemptDict] | None


class JobDict(TypedDict):
    id: str
    tasks: list[TaskDict]


class WorkerDict(TypedDict):
    id: str
    hostname: str
    labels: dict[str, str]
    slots: int
    running: int
    state: str
    version: str
    legacy: bool
    connected_at: str | None
    last_seen: str | None
    quarantined: NotRequired[str | None]  # why it gets no new work for now


class OutputStream(TypedDict):
    text: str
    bytes_total: int
    bytes_dropped: int


class TaskOutput(TypedDict):
    task_id: str
    state: str
    stdout: OutputStream
    stderr: OutputStream


class Client:
    """A connection to one master. `url`, `token` and `ca` default to GRIDRUN_URL,
    GRIDRUN_TOKEN and GRIDRUN_CA, then to the CLI config file (see gridrun.client.settings)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        ca: str | Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        settings = resolve(url, token, ca)
        self.url = settings.url
        self.warnings = settings.warnings
        verify: ssl.SSLContext | bool = True
        if settings.ca is not None:
            try:
                verify = ssl.create_default_context(cafile=str(settings.ca))
            except (OSError, ssl.SSLError) as exc:
                raise ClientError(
                    f"cannot use {settings.ca} as the CA certificate: {exc}"
                ) from None
        headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else None
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, verify=verify, headers=headers
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- plumbing

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ClientError(f"the master at {self.url} did not answer in time") from None
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach the master at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise self._error(response)
        return response

    @staticmethod
    def _error(response: httpx.Response) -> GridrunError:
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

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # ---- tasks

    def submit(
        self,
        cmd: str | None = None,
        *,
        argv: Sequence[str] | None = None,
        shell: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_s: float | None = None,
        priority: int = 0,
        labels: Mapping[str, str] | None = None,
        name: str | None = None,
        max_attempts: int = 1,
        retry: Mapping[str, Any] | None = None,
        queue_timeout_s: float | None = None,
        idempotency_key: str | None = None,
        on: str | None = None,
        cpu: float = 0,
        memory_mb: int = 0,
        gpus: int = 0,
        after: Sequence[str] = (),
        task_class: str | None = None,
        placement: str = "spread",
        secret_env: Mapping[str, str] | None = None,
    ) -> TaskDict:
        """Queue one task. `on` is a selector ("zone in (a,b), gpu, !spot"); cpu, memory_mb
        and gpus are what it needs free on a worker; `after` the task ids it runs after;
        `secret_env` variables that are passed to the process and never shown."""
        body: dict[str, Any] = {"shell": shell, "priority": priority}
        if secret_env:
            body["secret_env"] = dict(secret_env)
        if after:
            body["after"] = list(after)
        if task_class is not None:
            body["task_class"] = task_class
        if placement != "spread":
            body["placement"] = placement
        if on:
            body["on"] = on
        for key, value in (("cpu", cpu), ("memory_mb", memory_mb), ("gpus", gpus)):
            if value:
                body[key] = value
        if max_attempts != 1:
            body["max_attempts"] = max_attempts
        if retry:
            body["retry"] = dict(retry)
        if queue_timeout_s is not None:
            body["queue_timeout_s"] = queue_timeout_s
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        if cmd is not None:
            body["cmd"] = cmd
        if argv is not None:
            body["argv"] = list(argv)
        if env:
            body["env"] = dict(env)
        if cwd is not None:
            body["cwd"] = cwd
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        if labels:
            body["labels"] = dict(labels)
        if name is not None:
            body["name"] = name
        return cast(TaskDict, self._json("POST", "/v1/tasks", json=body))

    def submit_many(self, tasks: Sequence[Mapping[str, Any]]) -> list[TaskDict]:
        """Submit up to 10,000 task bodies (as POST /v1/tasks takes them) in one transaction."""
        answer = self._json("POST", "/v1/tasks", json={"tasks": list(tasks)})
        return cast(list[TaskDict], answer["tasks"])

    def submit_ids(self, tasks: Sequence[Mapping[str, Any]]) -> list[str]:
        """As `submit_many`, answered with the tasks' ids only (`Prefer: return=minimal`): far
        less to send and parse for a large batch."""
        answer = self._json(
            "POST",
            "/v1/tasks",
            json={"tasks": list(tasks)},
            headers={"Prefer": "return=minimal"},
        )
        return cast(list[str], answer["ids"])

    def broadcast(self, **task: Any) -> JobDict:
        """Run one task body (as POST /v1/tasks takes it) once on every live worker that
        matches its `labels` and `on`; the job lists one task per worker."""
        return cast(JobDict, self._json("POST", "/v1/jobs", json=task))

    def job(self, job_id: str) -> JobDict:
        return cast(JobDict, self._json("GET", f"/v1/jobs/{job_id}"))

    def add_schedule(self, cron: str, **task: Any) -> dict[str, Any]:
        """Make a task (a body as POST /v1/tasks takes it) on a cron schedule, in UTC."""
        return cast(
            dict[str, Any], self._json("POST", "/v1/schedules", json={**task, "cron": cron})
        )

    def schedules(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._json("GET", "/v1/schedules")["schedules"])

    def remove_schedule(self, schedule_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._json("DELETE", f"/v1/schedules/{schedule_id}"))

    def get(self, task_id: str, *, wait_s: float = 0) -> TaskDict:
        params = {"wait": wait_s} if wait_s else None
        timeout = httpx.Timeout(wait_s + 30.0)
        return cast(
            TaskDict, self._json("GET", f"/v1/tasks/{task_id}", params=params, timeout=timeout)
        )

    def wait(self, task_id: str, *, timeout_s: float | None = None) -> TaskDict:
        """Block until the task is terminal (or `timeout_s` passes); return it as it is then."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = LONG_POLL_S if deadline is None else deadline - time.monotonic()
            task = self.get(task_id, wait_s=max(0.0, min(LONG_POLL_S, left)))
            if task["state"] in TERMINAL or (deadline is not None and time.monotonic() >= deadline):
                return task

    def list_tasks(
        self,
        *,
        states: Sequence[str] = (),
        worker: str | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[TaskDict], str | None]:
        params: list[tuple[str, str | int]] = [("limit", limit)]
        params += [("state", s) for s in states]
        if worker:
            params.append(("worker", worker))
        if name:
            params.append(("name", name))
        if cursor:
            params.append(("cursor", cursor))
        page = self._json("GET", "/v1/tasks", params=params)
        return cast(list[TaskDict], page["tasks"]), page["next_cursor"]

    def iter_tasks(self, **filters: Any) -> Iterator[TaskDict]:
        cursor = None
        while True:
            tasks, cursor = self.list_tasks(cursor=cursor, **filters)
            yield from tasks
            if cursor is None:
                return

    def output(self, task_id: str) -> TaskOutput:
        return cast(TaskOutput, self._json("GET", f"/v1/tasks/{task_id}/output"))

    def follow(
        self, task_id: str, *, stdout_from: int = 0, stderr_from: int = 0
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The task's live events, (event, data), until it ends: `state`, `output` (stream,
        offset, bytes, text), `gap` (stream, dropped) and a last `end`. Returns without `end` if
        the stream was cut off (a master restart): follow again from the offsets reached."""
        path = f"/v1/tasks/{task_id}/output"
        params: dict[str, str | int] = {
            "follow": "true",
            "stdout_from": stdout_from,
            "stderr_from": stderr_from,
        }
        timeout = httpx.Timeout(self._http.timeout.connect, read=FOLLOW_READ_TIMEOUT_S)
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                event = "message"
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        yield event, json.loads(line[5:])
                    elif not line:
                        event = "message"
        except httpx.ConnectError as exc:
            raise ClientError(f"cannot reach the master at {self.url}: {exc}") from None
        except httpx.TransportError:
            return  # cut off (a master restart, say): the caller decides what next

    def output_bytes(self, task_id: str, stream: Literal["stdout", "stderr"]) -> bytes:
        response = self._request("GET", f"/v1/tasks/{task_id}/output", params={"stream": stream})
        return response.content

    def cancel(self, task_id: str) -> TaskDict:
        return cast(TaskDict, self._json("POST", f"/v1/tasks/{task_id}/cancel"))

    # ---- workers and health

    def workers(self) -> list[WorkerDict]:
        return cast(list[WorkerDict], self._json("GET", "/v1/workers")["workers"])

    def drain(self, worker_id: str) -> WorkerDict:
        return cast(WorkerDict, self._json("POST", f"/v1/workers/{worker_id}/drain"))

    def stats(self) -> dict[str, Any]:
        """Tasks per state and workers per state, now."""
        return cast(dict[str, Any], self._json("GET", "/v1/stats"))

    def health(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._json("GET", "/healthz"))
