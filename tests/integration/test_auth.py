"""API tokens and roles, join tokens and the audit trail, against a real master and workers."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from gridrun._proto import node_pb2, node_pb2_grpc
from gridrun.auth import Role, TokenEntry, digest, new_token
from gridrun.worker.agent import Agent
from gridrun.worker.config import WorkerConfig
from tests.integration.conftest import Grid

TOKENS = {name: new_token() for name in ("ops", "alice", "bob", "viewer", "fleet")}
ROLES = {
    "ops": Role.ADMIN,
    "alice": Role.SUBMIT,
    "bob": Role.SUBMIT,
    "viewer": Role.READ,
    "fleet": Role.WORKER,
}


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Grid]:
    grid = Grid(tmp=tmp_path)
    grid.master_overrides = {
        "tokens": [TokenEntry(n, ROLES[n], digest(t)) for n, t in TOKENS.items()],
        "audit_log": tmp_path / "audit.jsonl",
    }
    await grid.start_master()
    grid.use_token(TOKENS["ops"])  # the grid's own helpers
    try:
        yield grid
    finally:
        await grid.close()


def as_(grid: Grid, who: str | None, token: str | None = None) -> httpx.AsyncClient:
    """A client for one caller: a named token, a raw token, or nobody."""
    headers = {}
    if who is not None:
        headers["Authorization"] = f"Bearer {TOKENS[who]}"
    if token is not None:
        headers["Authorization"] = token
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{grid.http_port}", headers=headers, timeout=30
    )


def audit(grid: Grid) -> list[dict[str, Any]]:
    path = grid.tmp / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


async def submit(client: httpx.AsyncClient, cmd: str = "sleep 30") -> dict[str, Any]:
    response = await client.post("/v1/tasks", json={"cmd": cmd})
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def test_missing_and_bad_tokens_get_401_everywhere_but_healthz(secured: Grid) -> None:
    calls = [
        ("GET", "/v1/tasks", None),
        ("POST", "/v1/tasks", {"cmd": "true"}),
        ("GET", "/v1/tasks/t1", None),
        ("GET", "/v1/tasks/t1/output", None),
        ("POST", "/v1/tasks/t1/cancel", None),
        ("GET", "/v1/workers", None),
        ("POST", "/v1/workers/w1/drain", None),
        ("GET", "/v1/stats", None),
        ("POST", "/tasks", {"cmd": "touch test.txt"}),
    ]
    bad_headers = [None, "Bearer grt_wrong", "Bearer", f"Basic {TOKENS['ops']}", "grt_x"]
    for header in bad_headers:
        async with as_(secured, None, header) as client:
            for method, path, body in calls:
                response = await client.request(method, path, json=body)
                assert response.status_code == 401, (header, method, path, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert response.headers["content-type"] == "application/problem+json"
    async with as_(secured, None) as client:
        assert (await client.get("/healthz")).status_code == 200
    counts = (await secured.api.get("/v1/stats", headers=auth("ops"))).json()["tasks"]
    assert sum(counts.values()) == 0  # nothing got in
    events = {e["event"] for e in audit(secured)}
    assert {"auth.missing", "auth.bad_token"} <= events


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


async def test_each_role_can_do_its_calls_and_no_others(secured: Grid) -> None:
    worker = await secured.add_worker("w1", join_token=TOKENS["fleet"])
    async with (
        as_(secured, "ops") as ops,
        as_(secured, "alice") as alice,
        as_(secured, "bob") as bob,
        as_(secured, "viewer") as viewer,
        as_(secured, "fleet") as fleet,
    ):
        mine = await submit(alice)
        assert mine["submitted_by"] == "alice"
        theirs = await submit(bob)
        legacy = await alice.post("/tasks", json={"cmd": "true"})
        assert legacy.status_code == 200
        await secured.wait_state(mine["id"], "running")

        # read: everything readable, nothing else
        for path in ("/v1/tasks", f"/v1/tasks/{mine['id']}", "/v1/workers", "/v1/stats"):
            assert (await viewer.get(path)).status_code == 200, path
        assert (await viewer.get(f"/v1/tasks/{mine['id']}/output")).status_code == 200
        for method, path in [
            ("POST", "/v1/tasks"),
            ("POST", f"/v1/tasks/{mine['id']}/cancel"),
            ("POST", "/v1/workers/w1/drain"),
            ("POST", "/tasks"),
        ]:
            response = await viewer.request(method, path, json={"cmd": "true"})
            assert response.status_code == 403, (method, path)
            assert "role 'read' may not" in response.json()["detail"]

        # a worker's join token is no API token
        assert (await fleet.get("/v1/tasks")).status_code == 403

        # submit: reads everything, cancels its own only, drains nothing
        assert (await alice.get(f"/v1/tasks/{theirs['id']}")).status_code == 200
        refused = await alice.post(f"/v1/tasks/{theirs['id']}/cancel")
        assert refused.status_code == 403
        assert "another token" in refused.json()["detail"]
        assert (await alice.post("/v1/workers/w1/drain")).status_code == 403
        cancelled = await alice.post(f"/v1/tasks/{mine['id']}/cancel")
        assert cancelled.status_code == 200
        assert (await secured.wait(mine["id"]))["state"] == "cancelled"
        assert (await bob.get(f"/v1/tasks/{theirs['id']}")).json()["state"] != "cancelled"

        # admin: cancels anyone's, drains
        assert (await ops.post(f"/v1/tasks/{theirs['id']}/cancel")).status_code == 200
        assert (await ops.post("/v1/workers/w1/drain")).status_code == 202
        await asyncio.wait_for(secured.agents[0].task, 30)  # the drained worker exits
        assert worker.refused is None

    lines = audit(secured)
    submits = [e for e in lines if e["event"] == "task.submit"]
    assert [(e["who"], e["role"]) for e in submits] == [
        ("alice", "submit"),
        ("bob", "submit"),
        ("alice", "submit"),
    ]
    assert submits[0]["ids"] == [mine["id"]]
    assert submits[0]["cmd"] == "sleep 30"
    assert all(e["from"].startswith("127.0.0.1:") for e in lines if e["event"] != "worker.token_ok")
    cancels = [(e["who"], e["task"]) for e in lines if e["event"] == "task.cancel"]
    assert cancels == [("alice", mine["id"]), ("ops", theirs["id"])]
    forbidden = [(e["who"], e.get("needs")) for e in lines if e["event"] == "auth.forbidden"]
    assert ("viewer", "submit") in forbidden
    assert ("fleet", "read") in forbidden
    assert ("alice", None) in forbidden  # cancelling bob's task
    assert [e["who"] for e in lines if e["event"] == "worker.drain"] == ["ops"]
    assert any(e["event"] == "worker.token_ok" and e["who"] == "fleet" for e in lines)
    assert stat_mode(secured.tmp / "audit.jsonl") == 0o600


def stat_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


async def start_refused(grid: Grid, name: str, **settings: Any) -> Agent:
    """Run a worker the master should refuse; return it once it has given up."""
    agent = Agent(
        WorkerConfig(
            master=f"127.0.0.1:{grid.grpc_port}",
            slots=1,
            data_dir=grid.tmp / "workers" / name,
            name=name,
            **settings,
        )
    )
    await asyncio.wait_for(agent.run(asyncio.Event()), 20)
    return agent


async def test_workers_without_a_valid_join_token_are_refused(secured: Grid) -> None:
    for name, settings in [
        ("no-token", {}),
        ("bad-token", {"join_token": new_token()}),
        ("api-token", {"join_token": TOKENS["ops"]}),
    ]:
        agent = await start_refused(secured, name, **settings)
        assert agent.refused is not None, name
        assert "refused" in agent.refused
        assert not agent.connected.is_set()
    workers = (await secured.api.get("/v1/workers", headers=auth("ops"))).json()["workers"]
    assert workers == []
    refusals = [e for e in audit(secured) if e["event"] == "worker.refused"]
    assert len(refusals) == 3
    assert "no join token" in refusals[0]["reason"]
    assert "not valid" in refusals[1]["reason"]
    assert "not valid" in refusals[2]["reason"]

    # with the right token a worker joins and runs tasks
    await secured.add_worker("good", join_token=TOKENS["fleet"])
    async with as_(secured, "alice") as alice:
        task = await submit(alice, "echo joined")
        assert (await secured.wait(task["id"]))["state"] == "succeeded"


async def test_the_articles_worker_cannot_join_a_grid_with_join_tokens(secured: Grid) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.grpc_port}") as channel:
        stub = node_pb2_grpc.NodeServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ReportStatus(node_pb2.Request(action="hello"))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stream = stub.AssignTask(node_pb2.Request())
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stream.read()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_without_tokens_the_api_is_open_and_tasks_say_anonymous(grid: Grid) -> None:
    task = await grid.submit(cmd="true")
    assert task["submitted_by"] == "anonymous"
    assert (await grid.api.post(f"/v1/tasks/{task['id']}/cancel")).status_code in (200, 409)


async def test_me_says_who_a_token_is_and_what_it_may_do(secured: Grid) -> None:
    async with as_(secured, "alice") as alice, as_(secured, "viewer") as viewer:
        mine = (await alice.get("/v1/me")).json()
        assert mine == {
            "name": "alice",
            "role": "submit",
            "permissions": ["cancel own tasks", "read", "submit"],
        }
        assert (await viewer.get("/v1/me")).json()["permissions"] == ["read"]
    async with as_(secured, None) as nobody:
        assert (await nobody.get("/v1/me")).status_code == 401
    async with as_(secured, "fleet") as worker_token:
        assert (await worker_token.get("/v1/me")).status_code == 403
