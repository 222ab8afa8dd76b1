"""Tenants are apart: what one owner (a token's name) submits never finds, takes or limits
another's idempotency keys, concurrency keys or their limits; the keys a schedule uses for its
slots are the master's alone; only an admin makes a key shared by all."""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers import eventually_async
from tests.integration.conftest import TOKENS, Grid


def as_(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


async def post(grid: Grid, who: str, body: dict[str, Any]) -> httpx.Response:
    return await grid.api.post("/v1/tasks", json=body, headers=as_(who))


async def test_an_idempotency_key_is_its_owners(shared: Grid) -> None:
    first = await post(shared, "alice", {"cmd": "echo alice", "idempotency_key": "nightly-1"})
    assert first.status_code == 201, first.text
    bobs = await post(shared, "bob", {"cmd": "echo bob", "idempotency_key": "nightly-1"})
    assert bobs.status_code == 201, bobs.text  # bob's own task, not alice's
    assert bobs.json()["id"] != first.json()["id"]
    assert bobs.json()["cmd"] == "echo bob"
    again = await post(shared, "alice", {"cmd": "echo other", "idempotency_key": "nightly-1"})
    assert again.status_code == 200  # alice's key still finds alice's task
    assert (again.json()["id"], again.json()["cmd"]) == (first.json()["id"], "echo alice")
    bobs_again = await post(shared, "bob", {"cmd": "echo x", "idempotency_key": "nightly-1"})
    assert (bobs_again.status_code, bobs_again.json()["id"]) == (200, bobs.json()["id"])


async def test_the_keys_of_schedule_slots_are_the_masters_alone(shared: Grid) -> None:
    made = await shared.api.post(
        "/v1/schedules", json={"cron": "* * * * *", "cmd": "true"}, headers=as_("alice")
    )
    assert made.status_code == 201, made.text
    from datetime import datetime

    next_at = datetime.fromisoformat(made.json()["next_at"].replace("Z", "+00:00"))
    slot_key = f"schedule:{made.json()['id']}:{round(next_at.timestamp() * 1000)}"
    for key in (slot_key, "schedule:anything"):
        taken = await post(shared, "bob", {"cmd": "echo hijack", "idempotency_key": key})
        assert taken.status_code == 422, taken.text
        assert "the master's own" in taken.json()["detail"]


async def test_a_concurrency_key_is_its_owners_and_its_limit_is_set_once(shared: Grid) -> None:
    await shared.add_worker("w1", slots=4)
    deploy = {"cmd": "sleep 30", "concurrency_key": "deploy", "concurrency_limit": 1}
    alices = (await post(shared, "alice", deploy)).json()
    await shared.wait_state(alices["id"], "running")
    bobs = await post(shared, "bob", deploy)  # bob's "deploy" is not alice's
    assert bobs.status_code == 201, bobs.text
    await shared.wait_state(bobs.json()["id"], "running")
    # alice's key has limit 1: a task of hers that says 50 is refused, with the key's limit
    louder = await post(shared, "alice", {**deploy, "concurrency_limit": 50})
    assert louder.status_code == 409, louder.text
    assert "limit 1" in louder.json()["detail"]
    second = (await post(shared, "alice", deploy)).json()

    async def reason() -> str | None:
        return (await shared.task(second["id"]))["unschedulable"]

    assert await eventually_async(reason, 10) == "waiting for concurrency key deploy (1/1 running)"
    keys = (await shared.api.get("/v1/concurrency")).json()["keys"]
    assert sorted((k["key"], k["owner"], k["limit"]) for k in keys) == [
        ("deploy", "alice", 1), ("deploy", "bob", 1),
    ]  # fmt: skip
    for t in (alices, bobs.json(), second):
        await shared.client.cancel(t["id"])


async def test_only_an_admin_declares_a_key_shared_by_every_owner(shared: Grid) -> None:
    refused = await shared.api.put(
        "/v1/concurrency/db-migrate", json={"limit": 1}, headers=as_("alice")
    )
    assert refused.status_code == 403
    declared = await shared.api.put("/v1/concurrency/db-migrate", json={"limit": 1})
    assert declared.status_code == 200, declared.text
    await shared.add_worker("w1", slots=4)
    body = {"cmd": "sleep 30", "concurrency_key": "db-migrate", "concurrency_limit": 1}
    alices = (await post(shared, "alice", body)).json()
    await shared.wait_state(alices["id"], "running")
    bobs = (await post(shared, "bob", body)).json()  # shared: bob waits for alice's

    async def reason() -> str | None:
        return (await shared.task(bobs["id"]))["unschedulable"]

    assert await eventually_async(reason, 10) == (
        "waiting for concurrency key db-migrate (1/1 running)"
    )
    other = await post(shared, "bob", {**body, "concurrency_limit": 3})
    assert other.status_code == 409
    assert "grid-wide" in other.json()["detail"]
    await shared.client.cancel(alices["id"])
    await shared.wait_state(bobs["id"], "running")
    await shared.client.cancel(bobs["id"])
    removed = await shared.api.delete("/v1/concurrency/db-migrate")
    assert removed.status_code == 204
    again = await post(shared, "bob", {**body, "cmd": "true", "concurrency_limit": 3})
    assert again.status_code == 201  # bob's own key now, declared with his limit
