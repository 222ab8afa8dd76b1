"""Broadcast jobs: one task per matching live worker, each pinned to its worker."""

from __future__ import annotations

from tests.helpers import eventually_async
from tests.integration.conftest import Grid


async def test_a_job_runs_once_on_each_live_matching_worker(grid: Grid) -> None:
    await grid.add_worker("w1", labels={"zone": "a"})
    await grid.add_worker("w2", labels={"zone": "b"})
    w3 = await grid.add_worker("w3", labels={"zone": "a"})
    await grid.add_worker("w4", labels={"zone": "a", "spot": "1"})
    await grid.stop_worker(w3)  # offline: not part of the job

    async def w3_offline() -> bool:
        workers = (await grid.api.get("/v1/workers")).json()["workers"]
        return next(w["state"] for w in workers if w["id"] == "w3") == "offline"

    # the master records the end of w3's stream a moment after the worker has gone
    assert await eventually_async(w3_offline, 10)
    response = await grid.api.post(
        "/v1/jobs", json={"cmd": 'echo "on $GRIDRUN_WORKER_ID"', "shell": True, "on": "zone=a"}
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert sorted(t["pinned_worker"] for t in job["tasks"]) == ["w1", "w4"]
    assert {t["job"] for t in job["tasks"]} == {job["id"]}
    for task in job["tasks"]:
        done = await grid.wait(task["id"])
        assert (done["state"], done["worker_id"]) == ("succeeded", task["pinned_worker"])
        out = await grid.output(task["id"])
        assert out["stdout"]["text"] == f"on {task['pinned_worker']}\n"
    again = (await grid.api.get(f"/v1/jobs/{job['id']}")).json()
    assert sorted(t["state"] for t in again["tasks"]) == ["succeeded", "succeeded"]
    listed = (await grid.api.get("/v1/tasks", params={"job": job["id"]})).json()["tasks"]
    assert len(listed) == 2
    assert (await grid.api.get("/v1/jobs/nope")).status_code == 404


async def test_a_job_nobody_matches_is_refused(grid: Grid) -> None:
    await grid.add_worker("w1", labels={"zone": "a"})
    response = await grid.api.post("/v1/jobs", json={"cmd": "true", "on": "zone=z"})
    assert response.status_code == 409
    assert "no live worker matches" in response.json()["detail"]
    too_big = await grid.api.post("/v1/jobs", json={"cmd": "true", "gpus": 8})
    assert too_big.status_code == 409


async def test_a_pinned_task_waits_for_its_worker_and_says_when_it_left(grid: Grid) -> None:
    w1 = await grid.add_worker("w1", labels={"zone": "a"}, slots=1)
    await grid.add_worker("w2", labels={"zone": "b"}, slots=1)
    hold = await grid.submit(cmd="sleep 30", shell=True, on="zone=a")
    await grid.wait_state(hold["id"], "running")
    job = (await grid.api.post("/v1/jobs", json={"cmd": "true", "shell": True})).json()
    on_w1 = next(t for t in job["tasks"] if t["pinned_worker"] == "w1")
    on_w2 = next(t for t in job["tasks"] if t["pinned_worker"] == "w2")
    assert (await grid.wait(on_w2["id"]))["state"] == "succeeded"
    # w1 is busy: it waits for w1, held there (prefetch) behind the running task
    assert (await grid.task(on_w1["id"]))["state"] == "assigned"
    await grid.vanish(w1)

    async def reason() -> str | None:
        task = await grid.task(on_w1["id"])
        assert task["state"] == "queued"  # never moved to w2
        return task["unschedulable"]

    assert await eventually_async(reason, 10) == (
        "worker w1 (the only one it may run on) is not live"
    )
