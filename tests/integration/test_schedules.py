"""Cron schedules with a wall clock the test moves: a slot fires once, a restart does not fire
it again, missed slots are caught up once, removing stops it, bad cron is a 422."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gridrun.model import Schedule
from gridrun.spec import make_spec
from tests.helpers import ShiftedClock, eventually_async
from tests.integration.conftest import Grid

# Two days ahead (UTC): the worker's real clock stays within the window the master's shifted
# clock accepts reports in (times up to 30 days before its own, not months or minutes after).
DAY = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()


def at(hh_mm_ss: str) -> int:
    return int(datetime.fromisoformat(f"{DAY}T{hh_mm_ss}+00:00").timestamp() * 1000)


async def made_by(grid: Grid, schedule_id: str) -> list[dict[str, Any]]:
    tasks = (await grid.api.get("/v1/tasks", params={"limit": 100})).json()["tasks"]
    return [t for t in tasks if (t["idempotency_key"] or "").startswith(f"schedule:{schedule_id}")]


async def test_a_schedule_fires_once_per_slot_across_a_restart(grid: Grid) -> None:
    clock = ShiftedClock(at("00:00:30"))
    await grid.stop_master()
    await grid.start_master(clock=clock)
    await grid.add_worker("w1")
    response = await grid.api.post(
        "/v1/schedules", json={"cron": "* * * * *", "cmd": "echo tick", "shell": True,
                               "name": "ticker"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    schedule = response.json()
    assert schedule["next_at"] == f"{DAY}T00:01:00Z"
    assert await made_by(grid, schedule["id"]) == []

    clock.advance_to(at("00:01:05"))
    (first,) = await eventually_async(lambda: made_by(grid, schedule["id"]), 10)
    assert (first["name"], first["idempotency_key"]) == (
        "ticker",
        f"schedule:{schedule['id']}:{at('00:01:00')}",
    )
    assert (await grid.wait(first["id"]))["state"] == "succeeded"

    await grid.stop_master()  # a restart within the same slot fires nothing more
    master = await grid.start_master(clock=clock)
    assert await master.core.schedules.fire_due() == []
    assert len(await made_by(grid, schedule["id"])) == 1
    listed = (await grid.api.get(f"/v1/schedules/{schedule['id']}")).json()
    assert (listed["next_at"], listed["last_task"]) == (f"{DAY}T00:02:00Z", first["id"])

    clock.advance_to(at("00:09:30"))  # slots 00:02 .. 00:09 missed: caught up once
    await master.core.schedules.fire_due()
    assert len(await made_by(grid, schedule["id"])) == 2
    after = (await grid.api.get(f"/v1/schedules/{schedule['id']}")).json()
    assert (after["last_fired"], after["next_at"]) == (
        f"{DAY}T00:02:00Z",
        f"{DAY}T00:10:00Z",
    )
    metrics = (await grid.api.get("/metrics")).text
    assert "gridrun_schedule_slots_skipped_total 7.0" in metrics  # 00:03 .. 00:09, counted

    removed = await grid.api.delete(f"/v1/schedules/{schedule['id']}")
    assert removed.status_code == 200
    assert (await grid.api.get("/v1/schedules")).json()["schedules"] == []
    clock.advance_to(at("00:11:00"))
    await master.core.schedules.fire_due()
    assert len(await made_by(grid, schedule["id"])) == 2
    assert (await grid.api.delete(f"/v1/schedules/{schedule['id']}")).status_code == 404


async def test_a_bad_cron_is_refused(grid: Grid) -> None:
    for cron in ("61 * * * *", "every day", ""):
        response = await grid.api.post("/v1/schedules", json={"cron": cron, "cmd": "true"})
        assert response.status_code == 422, cron
        assert "cron" in response.json()["detail"]


async def test_thousands_of_schedules_due_in_one_slot_fire_in_one_pass(grid: Grid) -> None:
    """3,000 every-minute schedules: one look at the clock fires them all, a batch of them
    per transaction (it fired 100 per liveness period, each in its own transaction: 2,000
    took over 30 s, and past ~3,500 a slot would overrun the minute)."""
    clock = ShiftedClock(at("00:00:30"))
    await grid.stop_master()
    master = await grid.start_master(clock=clock)
    spec = make_spec(cmd="true")
    for start in range(0, 3000, 500):
        for i in range(start, start + 500):
            await master.service.store.schedules.add_schedule(
                Schedule(
                    id=f"s{i:05}",
                    cron="* * * * *",
                    spec=spec,
                    created_at=at("00:00:30"),
                    next_at=at("00:01:00"),
                    name=None,
                )
            )
    await master.core.liveness.close()  # (the test looks at the clock itself)
    clock.advance_to(at("00:01:01"))
    made = await master.core.schedules.fire_due()
    assert len(made) == 3000
    assert len({t.spec.idempotency_key for t in made}) == 3000
    assert await master.core.schedules.fire_due() == []  # each slot once
    stats = (await grid.api.get("/v1/stats")).json()
    assert stats["tasks"]["queued"] == 3000


async def test_a_cron_that_never_fires_or_has_a_seconds_field_is_refused(grid: Grid) -> None:
    for cron, why in (
        ("0 0 30 2 *", "never fires"),  # 30 February (was a 500)
        ("0 0 31 4 *", "never fires"),
        ("* * * * * *", "five fields"),  # every second: a queue no quota was meant to meet
        ("*/5 * * * * 0", "five fields"),
    ):
        response = await grid.api.post("/v1/schedules", json={"cron": cron, "cmd": "true"})
        assert response.status_code == 422, (cron, response.text)
        assert why in response.json()["detail"], cron


async def test_schedule_slots_past_the_owners_quota_make_no_task_and_are_counted(
    grid: Grid,
) -> None:
    """An owner at its max_queued could make schedules fire past it (101, then 201 queued
    against 5): a slot over the quota now makes no task, and says so."""
    clock = ShiftedClock(at("00:00:30"))
    await grid.stop_master()
    master = await grid.start_master(clock=clock)
    await master.core.liveness.close()  # (the test looks at the clock itself)
    quota = await grid.api.put("/v1/quotas/owner/anonymous", json={"max_queued": 5})
    assert quota.status_code == 200
    await grid.submit_many([{"cmd": "true"}] * 4)  # no worker: they stay queued
    ids = []
    for _ in range(3):
        made = await grid.api.post("/v1/schedules", json={"cron": "* * * * *", "cmd": "true"})
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    clock.advance_to(at("00:01:01"))
    assert len(await master.core.schedules.fire_due()) == 1  # room for one more: the quota is 5
    clock.advance_to(at("00:02:01"))
    assert await master.core.schedules.fire_due() == []
    stats = (await grid.api.get("/v1/stats")).json()
    assert stats["tasks"]["queued"] == 5
    listed = {s["id"]: s for s in (await grid.api.get("/v1/schedules")).json()["schedules"]}
    assert sum(listed[i]["over_quota"] for i in ids) == 2 + 3  # every slot that made nothing
    assert all(listed[i]["next_at"] > "" for i in ids)  # and each moved on to its next slot
    metrics = (await grid.api.get("/metrics")).text
    assert "gridrun_schedule_slots_over_quota_total 5.0" in metrics
    await grid.api.put("/v1/quotas/owner/anonymous", json={"max_queued": 100})
    clock.advance_to(at("00:03:01"))
    assert len(await master.core.schedules.fire_due()) == 3  # room again: each fires
