"""The synchronous client. Answers are the API's JSON, typed as TypedDicts."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal, Unpack, cast
from urllib.parse import quote

import httpx

from gridrun.client import calls
from gridrun.client.settings import DEFAULT_URL
from gridrun.client.types import (
    FileDict,
    InputDict,
    JobDict,
    SubmitOptions,
    TaskDict,
    TaskOutput,
    TaskSegments,
    WorkerDict,
)
from gridrun.errors import NotFound
from gridrun.files import sha256_of

__all__ = ["DEFAULT_URL", "Client"]


class Client:
    """A connection to one master. `url`, `token` and `ca` default to GRIDRUN_URL,
    GRIDRUN_TOKEN and GRIDRUN_CA, then to the CLI config file (see gridrun.client.settings).
    `AsyncClient` is its twin for asyncio: the same methods, awaited."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        ca: str | Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url, self.warnings, http = calls.connection(url, token, ca, timeout)
        self._http = httpx.Client(**http)

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

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise calls.transport_error(self.url, exc) from None
        if response.status_code >= 400:
            error = calls.error_from(response)
            if calls.is_unknown_route(error):
                raise calls.older_master(self.url, path, self._master_version()) from None
            raise error
        return response

    def _master_version(self) -> str | None:
        try:
            return str(self._http.get("/healthz").json()["version"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # ---- tasks

    def submit(self, cmd: str | None = None, **options: Unpack[SubmitOptions]) -> TaskDict:
        """Queue one task: a shell line or program (`cmd`), or `argv`; the options are those
        of POST /v1/tasks (see SubmitOptions)."""
        return cast(TaskDict, self._json("POST", "/v1/tasks", json=calls.submit_body(cmd, options)))

    def submit_many(self, tasks: Sequence[Mapping[str, Any]]) -> list[TaskDict]:
        """Submit up to 10,000 task bodies (as POST /v1/tasks takes them) in one transaction."""
        answer = self._json("POST", "/v1/tasks", json={"tasks": list(tasks)})
        return cast(list[TaskDict], answer["tasks"])

    def submit_ids(self, tasks: Sequence[Mapping[str, Any]]) -> list[str]:
        """As `submit_many`, answered with the tasks' ids only (`Prefer: return=minimal`): far
        less to send and parse for a large batch."""
        minimal = {"Prefer": "return=minimal"}
        answer = self._json("POST", "/v1/tasks", json={"tasks": list(tasks)}, headers=minimal)
        return cast(list[str], answer["ids"])

    def broadcast(self, **task: Any) -> JobDict:
        """Run one task body (as POST /v1/tasks takes it) once on every live worker that
        matches its `labels` and `on`; the job lists one task per worker."""
        return cast(JobDict, self._json("POST", "/v1/jobs", json=task))

    def job(self, job_id: str, *, tasks: bool = True) -> JobDict:
        """A job as a whole: counts per state, progress, its unsuccessful tasks by index,
        and (unless tasks=False) its first 1,000 tasks."""
        params = {} if tasks else {"tasks": "false"}
        return cast(JobDict, self._json("GET", f"/v1/jobs/{job_id}", params=params))

    def jobs(self, limit: int = 20, owner: str | None = None) -> list[JobDict]:
        """The newest jobs first, each with its counts."""
        params: dict[str, Any] = {"limit": limit, **({"owner": owner} if owner else {})}
        return cast(list[JobDict], (self._json("GET", "/v1/jobs", params=params))["jobs"])

    def submit_array(
        self,
        task: Mapping[str, Any],
        array: str | None = None,
        items: Sequence[str] | None = None,
        commands: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """An array job (one durable submission): one task per index of `array` (Slurm's
        syntax, %N capping how many run at once), per item, or per command; {id, size}."""
        body = calls.array_body(task, array, items, commands)
        return cast(dict[str, Any], self._json("POST", "/v1/arrays", json=body))

    def cancel_job(self, job_id: str) -> dict[str, int]:
        """Cancel every task of the job that has not ended: {cancelled, stopping}."""
        return cast(dict[str, int], self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    def retry_job(self, job_id: str, states: Sequence[str] | None = None) -> dict[str, int]:
        """Run the job's failed, timed-out, lost and cancelled tasks (or those in `states`)
        again, each as a new attempt: {retried}."""
        body = {"states": list(states)} if states else {}
        return cast(dict[str, int], self._json("POST", f"/v1/jobs/{job_id}/retry", json=body))

    def cancel_matching(self, **filters: Any) -> dict[str, int]:
        """Cancel, in one request, the tasks matching every filter given (state, owner,
        queue, job, label, name, worker; all=True with none): {cancelled, stopping}."""
        return cast(dict[str, int], self._json("POST", "/v1/tasks/cancel", json=filters))

    def add_schedule(self, cron: str, **task: Any) -> dict[str, Any]:
        """Make a task (a body as POST /v1/tasks takes it) on a cron schedule, in UTC."""
        body = {**task, "cron": cron}
        return cast(dict[str, Any], self._json("POST", "/v1/schedules", json=body))

    def schedules(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._json("GET", "/v1/schedules")["schedules"])

    def remove_schedule(self, schedule_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._json("DELETE", f"/v1/schedules/{schedule_id}"))

    def get(self, task_id: str, *, wait_s: float = 0) -> TaskDict:
        """The task; with `wait_s`, answered when it ends or after that many seconds."""
        answer = self._json("GET", f"/v1/tasks/{task_id}", **calls.wait_params(wait_s))
        return cast(TaskDict, answer)

    def wait(self, task_id: str, *, timeout_s: float | None = None) -> TaskDict:
        """Block until the task is terminal (or `timeout_s` passes); return it as it is then."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = calls.LONG_POLL_S if deadline is None else deadline - time.monotonic()
            task = self.get(task_id, wait_s=max(0.0, min(calls.LONG_POLL_S, left)))
            if task["state"] in calls.TERMINAL or (
                deadline is not None and time.monotonic() >= deadline
            ):
                return task

    def list_tasks(
        self,
        *,
        states: Sequence[str] = (),
        worker: str | None = None,
        name: str | None = None,
        owner: str | None = None,
        queue: str | None = None,
        job: str | None = None,
        index: int | None = None,
        labels: Sequence[str] = (),
        since: str | None = None,
        until: str | None = None,
        sort: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[TaskDict], str | None]:
        """A page of tasks, newest first; `labels` k=v, `since`/`until` ISO 8601 times of
        creation, `sort` duration, cpu or memory for the top `limit` by that (no cursor)."""
        params = calls.list_params(
            states, limit, cursor, worker=worker, name=name, owner=owner, queue=queue, job=job,
            since=since, until=until, sort=sort,
        )  # fmt: skip
        params += [("label", label) for label in labels]
        if index is not None:  # (of the job: its task at this index)
            params.append(("index", index))
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

    # ---- files

    def upload_input(self, path: str | Path) -> InputDict:
        """Upload a local file as an input (streamed; nothing sent if the master holds
        these bytes of yours already); a task then names its sha256 in `inputs`."""
        digest = sha256_of(Path(path))
        try:
            return cast(InputDict, self._json("GET", f"/v1/inputs/{digest}"))
        except NotFound:
            pass
        pieces = calls.file_pieces(Path(path))
        return cast(
            InputDict,
            self._json("PUT", f"/v1/inputs/{digest}", content=pieces, headers=calls.OCTETS),
        )

    def files(self, task_id: str) -> list[FileDict]:
        """The files collected from the task's attempts."""
        return cast(list[FileDict], self._json("GET", f"/v1/tasks/{task_id}/files")["files"])

    def download(
        self, task_id: str, path: str, out: BinaryIO, *, attempt: int | None = None
    ) -> int:
        """Write a collected file's bytes to `out` as they come; return how many."""
        params = {"attempt": attempt} if attempt is not None else None
        url = calls.file_path(task_id, path)
        written = 0
        try:
            with self._http.stream("GET", url, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise calls.error_from(response)
                for piece in response.iter_bytes():
                    out.write(piece)
                    written += len(piece)
        except httpx.TransportError as exc:
            raise calls.transport_error(self.url, exc) from None
        return written

    def segments(self, task_id: str, tail: int | None = None) -> TaskSegments:
        """Both streams in the order they were written (`tail`: only the last N lines)."""
        params = {"tail": tail} if tail is not None else None
        path = f"/v1/tasks/{task_id}/output/segments"
        return cast(TaskSegments, self._json("GET", path, params=params))

    def follow(
        self, task_id: str, *, stdout_from: int = 0, stderr_from: int = 0, raw: bool = False
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The task's live events, (event, data), until it ends: `state`, `output` (stream,
        offset, bytes, and text, or with `raw` data: the bytes exactly, base64), `gap` (stream,
        dropped) and a last `end`. Returns without `end` if
        the stream was cut off (a master restart): follow again from the offsets reached."""
        path = f"/v1/tasks/{task_id}/output"
        request = calls.follow_request(self._http, stdout_from, stderr_from, raw)
        try:
            with self._http.stream("GET", path, **request) as response:
                if response.status_code >= 400:
                    response.read()
                    raise calls.error_from(response)
                yield from calls.EventReader().read(response.iter_lines())
        except httpx.ConnectError as exc:
            raise calls.transport_error(self.url, exc) from None
        except httpx.TransportError:
            return  # cut off (a master restart, say): the caller decides what next

    def output_bytes(self, task_id: str, stream: Literal["stdout", "stderr"]) -> bytes:
        response = self._request("GET", f"/v1/tasks/{task_id}/output", params={"stream": stream})
        return response.content

    def cancel(self, task_id: str) -> TaskDict:
        return cast(TaskDict, self._json("POST", f"/v1/tasks/{task_id}/cancel"))

    # ---- allocation queues (admin)

    def alloc_queues(self) -> list[dict[str, Any]]:
        """The allocation queues, each with its config, state and active allocations."""
        return cast(list[dict[str, Any]], self._json("GET", "/v1/alloc/queues")["queues"])

    def alloc_add(
        self, name: str, config: Mapping[str, Any], dry_run: bool = True
    ) -> dict[str, Any]:
        """Add an allocation queue (`config` as POST /v1/alloc/queues takes it)."""
        body = {**config, "name": name, "dry_run": dry_run}
        return cast(dict[str, Any], self._json("POST", "/v1/alloc/queues", json=body))

    def alloc_info(self, name: str) -> dict[str, Any]:
        """A queue with its allocations, newest first."""
        return cast(dict[str, Any], self._json("GET", f"/v1/alloc/queues/{quote(name, safe='')}"))

    def alloc_pause(self, name: str, paused: bool = True) -> dict[str, Any]:
        verb = "pause" if paused else "resume"
        path = f"/v1/alloc/queues/{quote(name, safe='')}/{verb}"
        return cast(dict[str, Any], self._json("POST", path))

    def alloc_remove(self, name: str) -> None:
        """Remove a queue, cancelling the allocations it started."""
        self._request("DELETE", f"/v1/alloc/queues/{quote(name, safe='')}")

    def alloc_dry_run(self, config: Mapping[str, Any]) -> str:
        """Submit a held test allocation and cancel it; what the scheduler said (AllocRefused
        with its reason when it refuses)."""
        return str(self._json("POST", "/v1/alloc/dry-run", json=dict(config))["message"])

    # ---- workers and health

    def workers(self) -> list[WorkerDict]:
        return cast(list[WorkerDict], self._json("GET", "/v1/workers")["workers"])

    def drain(self, worker_id: str) -> WorkerDict:
        return cast(WorkerDict, self._json("POST", f"/v1/workers/{worker_id}/drain"))

    def quotas(self) -> list[dict[str, Any]]:
        """The quotas set: scope ("owner" or "queue"), name, max_queued, max_running."""
        return cast(list[dict[str, Any]], (self._json("GET", "/v1/quotas"))["quotas"])

    def set_quota(
        self,
        scope: str,
        name: str,
        max_queued: int | None = None,
        max_running: int | None = None,
    ) -> dict[str, Any]:
        """Set the quota of an owner or a queue (neither limit: removed); applies at once."""
        body = {"max_queued": max_queued, "max_running": max_running}
        path = f"/v1/quotas/{scope}/{name}"
        return cast(dict[str, Any], self._json("PUT", path, json=body))

    def concurrency_keys(self) -> list[dict[str, Any]]:
        """The concurrency keys declared: key, owner (None: grid-wide), limit."""
        return cast(list[dict[str, Any]], (self._json("GET", "/v1/concurrency"))["keys"])

    def set_concurrency_key(self, key: str, limit: int | None) -> None:
        """Declare a grid-wide concurrency key with its limit (admin); None removes it."""
        path = f"/v1/concurrency/{quote(key, safe='')}"
        if limit is None:
            self._request("DELETE", path)
        else:
            self._json("PUT", path, json={"limit": limit})

    def gc(
        self, older_than_s: float, states: Sequence[str] | None = None, dry_run: bool = False
    ) -> int:
        """Delete ended tasks (in these states) that ended more than `older_than_s` ago;
        return how many (with `dry_run`, how many would be)."""
        body = {"older_than_s": float(older_than_s), "states": states, "dry_run": dry_run}
        return int((self._json("POST", "/v1/gc", json=body))["deleted"])

    def owners(self) -> list[dict[str, Any]]:
        """Tasks queued and running per owner and queue."""
        return cast(list[dict[str, Any]], (self._json("GET", "/v1/owners"))["owners"])

    def stats(self) -> dict[str, Any]:
        """Tasks per state and workers per state, now."""
        return cast(dict[str, Any], self._json("GET", "/v1/stats"))

    def health(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._json("GET", "/healthz"))
