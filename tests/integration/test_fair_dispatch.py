"""A shared grid: what cannot run now never holds up what can (dispatch visits each shape of
task once, not every row), and every event that can make a task runnable wakes dispatch."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gridrun.auth import Role, TokenEntry, digest
from gridrun.errors import InvalidTransition
from tests.helpers import eventually_async
from tests.integration.conftest import TOKENS, Grid

pytestmark = pytest.mark.slow


async def test_thousands_of_unplaceable_tasks_do_not_hold_up_plain_ones(grid: Grid) -> None:
    """12,000 tasks no worker here can take (a label nobody has, more GPUs than any worker,
    labels nobody has), queued first, then 20 plain ones: the plain ones run at once.
    (A pass used to scan 8,192 rows from the head of the queue and stop.)"""
    await grid.add_worker("w1", slots=2)
    await grid.add_worker("w2", slots=2)
    kinds = [{"on": "zone=nowhere"}, {"gpus": 8}, {"labels": {"rack": "r9"}}]
    for kind in kinds:
        for _ in range(4):
            await grid.submit_many([{"cmd": "true", "shell": True, **kind}] * 1000)
    began = time.monotonic()
    plain = await grid.submit_many([{"cmd": "true", "shell": True}] * 20)
    for task in plain:
        done = await grid.wait(task["id"], timeout=15)
        assert done["state"] == "succeeded"
    assert time.monotonic() - began < 15
    counts = (await grid.api.get("/v1/stats")).json()
    assert counts["tasks"]["queued"] == 12_000  # the rest still wait, untouched


async def submit_as(grid: Grid, who: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {TOKENS[who]}"}
    response = await grid.api.post("/v1/tasks", json={"tasks": bodies}, headers=headers)
    assert response.status_code == 201, response.text
    return list(response.json()["tasks"])


async def started_in_order(grid: Grid, name: str) -> list[dict[str, Any]]:
    tasks = [t async for t in grid.client.iter_tasks(name=name)]
    return sorted((t for t in tasks if t["started_at"]), key=lambda t: t["started_at"])


async def test_a_late_submitter_is_served_in_turn_not_after_the_backlog(shared: Grid) -> None:
    """alice queues 1,000 tasks; once hers run, bob submits 10: every one of bob's starts
    before alice has started another 100 (first come, first served made him wait for all)."""
    await shared.add_worker("w1", slots=2)
    await shared.add_worker("w2", slots=2)
    alices = await submit_as(
        shared, "alice", [{"cmd": "sleep 0.02", "shell": True, "name": "a"}] * 1000
    )
    assert alices[0]["owner"] == "alice"
    await shared.wait(alices[20]["id"])
    bobs = await submit_as(shared, "bob", [{"cmd": "true", "shell": True, "name": "b"}] * 10)
    submitted = (await shared.task(bobs[0]["id"]))["created_at"]
    ended = [await shared.wait(t["id"], timeout=30) for t in bobs]
    assert all(t["state"] == "succeeded" for t in ended)
    last_start = max(t["started_at"] for t in ended)
    a_between = [
        t for t in await started_in_order(shared, "a") if submitted < t["started_at"] <= last_start
    ]
    assert len(a_between) < 100, len(a_between)
    for t in alices:  # (the rest need not run)
        with contextlib.suppress(InvalidTransition):
            await shared.client.cancel(t["id"])


async def test_shares_weight_who_gets_the_slots(tmp_path: Path) -> None:
    """With --share alice=3, alice gets about three slots in four while both have work."""
    grid = Grid(tmp=tmp_path)
    roles = {"ops": Role.ADMIN, "alice": Role.SUBMIT, "bob": Role.SUBMIT}
    grid.master_overrides = {
        "tokens": [TokenEntry(n, roles[n], digest(t)) for n, t in TOKENS.items()],
        "shares": {"alice": 3.0},
    }
    await grid.start_master()
    grid.use_token(TOKENS["ops"])
    try:
        body = {"cmd": "sleep 0.1", "shell": True, "name": "w"}
        await submit_as(grid, "bob", [body] * 200)  # bob first: age alone would favour him
        await submit_as(grid, "alice", [body] * 200)
        await grid.add_worker("w1", slots=4)

        async def enough() -> list[dict[str, Any]] | None:
            started = await started_in_order(grid, "w")
            return started if len(started) >= 80 else None

        started = (await eventually_async(enough, 60))[:80]
        share = Counter(t["owner"] for t in started)["alice"] / len(started)
        assert 0.65 <= share <= 0.85, share
    finally:
        await grid.close()


async def test_a_concurrency_key_holds_across_the_grid(grid: Grid, tmp_path: Path) -> None:
    """20 tasks with --concurrency deploy=1 on 4 free slots: never two at once (by the tasks'
    own clocks), and the ones waiting say why."""
    await grid.add_worker("w1", slots=2)
    await grid.add_worker("w2", slots=2)
    log = tmp_path / "deploys"
    log.mkdir()
    stamp = "echo $(date +%s%N) > " + str(log) + "/$GRIDRUN_TASK_ID"
    script = f"{stamp}.start; sleep 0.1; {stamp}.end"
    body = {"cmd": script, "shell": True, "concurrency_key": "deploy", "concurrency_limit": 1}
    tasks = await grid.submit_many([body] * 20)
    others = await grid.submit_many([{"cmd": "true", "shell": True}] * 6)

    async def waiting_reason() -> str | None:
        for t in tasks:
            task = await grid.task(t["id"])
            if task["state"] == "queued" and task["unschedulable"]:
                return str(task["unschedulable"])
        return None

    reason = await eventually_async(waiting_reason, 10)
    assert reason == "waiting for concurrency key deploy (1/1 running)"
    for t in others:  # the key holds back its own tasks only
        assert (await grid.wait(t["id"], timeout=10))["state"] == "succeeded"
    for t in tasks:
        assert (await grid.wait(t["id"], timeout=60))["state"] == "succeeded"
    spans = sorted(
        (int((log / f"{t['id']}.start").read_text()), int((log / f"{t['id']}.end").read_text()))
        for t in tasks
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start  # the next began after the last ended


async def test_quotas_refuse_or_hold_back_and_change_without_a_restart(shared: Grid) -> None:
    ops = shared.api
    response = await ops.put("/v1/quotas/owner/bob", json={"max_queued": 5})
    assert response.status_code == 200, response.text
    refused = await shared.api.put(
        "/v1/quotas/owner/bob", json={"max_queued": 1},
        headers={"Authorization": f"Bearer {TOKENS['alice']}"},
    )  # fmt: skip
    assert refused.status_code == 403
    await submit_as(shared, "bob", [{"cmd": "true"}] * 5)
    headers = {"Authorization": f"Bearer {TOKENS['bob']}"}
    over = await ops.post("/v1/tasks", json={"cmd": "true"}, headers=headers)
    assert over.status_code == 429, over.text
    assert over.headers["Retry-After"]
    assert "owner bob has 5 tasks queued; its quota is 5" in over.json()["detail"]
    assert await submit_as(shared, "alice", [{"cmd": "true"}])  # others are not limited
    # running: alice at most 1 at once, on 4 free slots
    await ops.put("/v1/quotas/owner/alice", json={"max_running": 1})
    sleepers = await submit_as(shared, "alice", [{"cmd": "sleep 30", "shell": True}] * 3)
    await shared.add_worker("w1", slots=4)
    await shared.wait_state(sleepers[0]["id"], "running")

    async def held() -> str | None:
        return (await shared.task(sleepers[1]["id"]))["unschedulable"]

    assert await eventually_async(held, 10) == "waiting: owner alice is at its quota of 1 running"
    assert (await shared.task(sleepers[2]["id"]))["state"] == "queued"
    quotas = (await ops.get("/v1/quotas")).json()["quotas"]
    assert {(q["scope"], q["name"], q["max_queued"], q["max_running"]) for q in quotas} == {
        ("owner", "bob", 5, None), ("owner", "alice", None, 1),
    }  # fmt: skip
    owners = {(o["owner"], o["queue"]): o for o in (await ops.get("/v1/owners")).json()["owners"]}
    assert owners["alice", "default"]["running"] == 1
    await ops.put("/v1/quotas/owner/alice", json={"max_running": 3})  # raised: at once
    for t in sleepers:
        await shared.wait_state(t["id"], "running")
        await shared.client.cancel(t["id"])


async def test_a_master_full_of_queued_tasks_answers_429(tmp_path: Path) -> None:
    grid = Grid(tmp=tmp_path, master_overrides={"max_queued": 10})
    await grid.start_master()
    try:
        await grid.submit_many([{"cmd": "true"}] * 10)
        response = await grid.api.post("/v1/tasks", json={"cmd": "true"})
        assert response.status_code == 429
        assert "its limit is 10 (master --max-queued)" in response.json()["detail"]
        assert response.headers["Retry-After"] == "10"
    finally:
        await grid.close()
