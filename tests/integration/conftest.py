"""An in-process grid: a real Master (SQLite file, gRPC and HTTP on free loopback ports) and
real worker Agents running real subprocesses, all in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridrun import model
from gridrun.auth import Role, TokenEntry, digest, new_token
from gridrun.client import AsyncClient
from gridrun.clock import Clock
from gridrun.master.app import Master, MasterConfig
from gridrun.worker.agent import Agent
from gridrun.worker.config import WorkerConfig
from tests.helpers import eventually_async

TERMINAL = {str(state) for state in model.TERMINAL}


@dataclass
class RunningAgent:
    agent: Agent
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


@dataclass
class Grid:
    tmp: Path
    master: Master | None = None
    agents: list[RunningAgent] = field(default_factory=list)
    http: httpx.AsyncClient | None = None  # raw HTTP, for what the status codes say
    sdk: AsyncClient | None = None  # the SDK users have, for everything else
    master_overrides: dict[str, Any] = field(default_factory=dict)
    grpc_port: int = 0
    http_port: int = 0

    @property
    def api(self) -> httpx.AsyncClient:
        assert self.http is not None
        return self.http

    async def start_master(self, clock: Clock | None = None, **overrides: Any) -> Master:
        settings: dict[str, Any] = {
            "db": self.tmp / "master" / "gridrun.db",
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "heartbeat_interval_s": 0.2,
            "liveness_timeout_s": 3.0,
            "kill_grace_s": 1.0,
            "db_sync": "normal",
            **self.master_overrides,
            **overrides,
        }
        self.master = Master(MasterConfig(**settings), clock=clock)
        await self.master.start()
        self.http_port, self.grpc_port = self.master.http_port, self.master.grpc_port
        if self.http is None:
            url = f"http://127.0.0.1:{self.http_port}"
            self.http = httpx.AsyncClient(base_url=url, timeout=30)
            self.sdk = AsyncClient(url, timeout=30)
        return self.master

    async def stop_master(self) -> None:
        if self.master is not None:
            await self.master.close()
            self.master = None

    async def add_worker(
        self,
        name: str,
        slots: int = 2,
        labels: dict[str, str] | None = None,
        master: str | None = None,
        **policy: Any,
    ) -> Agent:
        policy.setdefault("allow_shell", True)  # most tests use shell lines; policy tests say
        config = WorkerConfig(
            master=master or f"127.0.0.1:{self.grpc_port}",
            slots=slots,
            labels=labels or {},
            data_dir=self.tmp / "workers" / name,
            name=name,
            base_env=dict(os.environ),
            stop_grace_s=3.0,
            **policy,
        )
        agent = Agent(config)
        stop = asyncio.Event()
        running = RunningAgent(agent, stop, asyncio.create_task(agent.run(stop)))
        self.agents.append(running)
        await asyncio.wait_for(agent.connected.wait(), 10)
        return agent

    async def raw_output(self, task_id: str, stream: str = "stdout") -> bytes:
        """A stream of a task's stored output, byte-exact."""
        raw = await self.api.get(f"/v1/tasks/{task_id}/output", params={"stream": stream})
        return raw.content

    async def vanish(self, agent: Agent) -> None:
        """The worker disappears without a word, as if its machine died: its stream drops, it
        never reconnects, and (to clean up after the test) its processes are stopped."""
        running = next(r for r in self.agents if r.agent is agent)
        running.task.cancel()
        await asyncio.gather(running.task, return_exceptions=True)
        self.agents.remove(running)
        for execution in list(agent.executions.values()):
            execution.cancel("test: the machine is gone")
        agent.identity.release()

    async def stop_worker(self, agent: Agent) -> None:
        for running in list(self.agents):
            if running.agent is agent:
                await running.close()
                self.agents.remove(running)

    def use_token(self, token: str) -> None:
        """The grid's own helpers (raw HTTP and the SDK) send this token from now on."""
        for http in (self.api, self.client._http):
            http.headers["Authorization"] = f"Bearer {token}"

    @property
    def client(self) -> AsyncClient:
        assert self.sdk is not None
        return self.sdk

    async def submit(self, **body: Any) -> dict[str, Any]:
        return dict(await self.client.submit(**body))

    async def submit_many(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [dict(task) for task in await self.client.submit_many(bodies)]

    async def task(self, task_id: str) -> dict[str, Any]:
        return dict(await self.client.get(task_id))

    async def wait(self, task_id: str, timeout: float = 20.0) -> dict[str, Any]:
        task = dict(await self.client.wait(task_id, timeout_s=timeout))
        assert task["state"] in TERMINAL, f"task {task_id} still {task['state']}"
        return task

    async def wait_state(self, task_id: str, state: str, timeout: float = 10.0) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            task = await self.task(task_id)
            return task if task["state"] == state else None

        return await eventually_async(reached, timeout)

    async def output(self, task_id: str) -> dict[str, Any]:
        return dict(await self.client.output(task_id))

    async def close(self) -> None:
        """Stop everything, whatever fails on the way: a worker that will not stop still has
        its tasks' process groups killed, and the master and clients are closed after it."""
        errors: list[BaseException] = []
        for running in self.agents:
            try:
                await running.close()
            except BaseException as exc:
                errors.append(exc)
                running.task.cancel()
            finally:
                kill_groups(running.agent)
        self.agents.clear()
        for closing in (self.stop_master, self._close_clients):
            try:
                await closing()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    async def _close_clients(self) -> None:
        if self.sdk is not None:
            await self.sdk.aclose()
        if self.http is not None:
            await self.http.aclose()


def kill_groups(agent: Agent) -> None:
    """SIGKILL the process group of every task the agent still has running."""
    for execution in list(agent.executions.values()):
        pid = execution.pid
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
async def grid(tmp_path: Path) -> AsyncIterator[Grid]:
    g = Grid(tmp=tmp_path)
    await g.start_master()
    try:
        yield g
    finally:
        await g.close()


# a shared grid's callers: ops (admin), alice and bob (submitters), each a token of its own
TOKENS = {name: new_token() for name in ("ops", "alice", "bob")}


@pytest.fixture
async def shared(tmp_path: Path) -> AsyncIterator[Grid]:
    """A grid with tokens: ops (admin), alice and bob (submit); the grid's helpers are ops."""
    grid = Grid(tmp=tmp_path)
    roles = {"ops": Role.ADMIN, "alice": Role.SUBMIT, "bob": Role.SUBMIT}
    grid.master_overrides = {
        "tokens": [TokenEntry(n, roles[n], digest(t)) for n, t in TOKENS.items()]
    }
    await grid.start_master()
    grid.use_token(TOKENS["ops"])
    try:
        yield grid
    finally:
        await grid.close()
