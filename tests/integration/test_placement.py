"""Placement with real workers: selector forms through the API, GPUs counted and handed over in
CUDA_VISIBLE_DEVICES, freed on finish, and a task nobody could ever run said to be
unschedulable (and why) until a worker that could joins."""

from __future__ import annotations

import pytest

from gridrun.spec import parse_selector
from tests.helpers import eventually_async
from tests.integration.conftest import Grid


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        ("zone=b", "wb"),
        ("zone!=a, !spot", "wc"),
        ("zone in (a, c), ssd", "wa"),
        ("zone notin (a,c)", "wb"),
        ("spot", "wb"),
    ],
)
async def test_each_selector_form_picks_its_worker(grid: Grid, on: str, expected: str) -> None:
    await grid.add_worker("wa", labels={"zone": "a", "ssd": "yes"})
    await grid.add_worker("wb", labels={"zone": "b", "spot": "1"})
    await grid.add_worker("wc", labels={"zone": "c"})
    tasks = await grid.submit_many([{"cmd": "true", "shell": True, "on": on}] * 4)
    for task in tasks:
        done = await grid.wait(task["id"])
        assert (done["state"], done["worker_id"]) == ("succeeded", expected)
    assert parse_selector(tasks[0]["on"]) == parse_selector(on)  # shown back as it was asked


async def test_a_bad_selector_is_a_422_with_the_reason(grid: Grid) -> None:
    response = await grid.api.post("/v1/tasks", json={"cmd": "true", "on": "zone in (a"})
    assert response.status_code == 422
    assert "unclosed" in response.text


async def test_gpus_are_counted_handed_over_and_freed(grid: Grid) -> None:
    await grid.add_worker("g1", slots=4, gpus=1)
    await grid.add_worker("g2", slots=4, gpus=2)
    show = 'echo "$CUDA_VISIBLE_DEVICES"; sleep 0.5'
    first, second = await grid.submit_many([{"cmd": show, "shell": True, "gpus": 2}] * 2)
    one = await grid.submit(cmd=show, shell=True, gpus=1)
    done_first, done_second = await grid.wait(first["id"]), await grid.wait(second["id"])
    # a 2-GPU task never lands on the 1-GPU worker; the second waits for the first's GPUs
    assert (done_first["worker_id"], done_second["worker_id"]) == ("g2", "g2")
    assert done_second["started_at"] >= done_first["finished_at"]
    for task in (first, second):
        assert (await grid.output(task["id"]))["stdout"]["text"] == "0,1\n"
    done_one = await grid.wait(one["id"])
    assert done_one["state"] == "succeeded"
    assert (await grid.output(one["id"]))["stdout"]["text"] in ("0\n", "1\n")
    cpu_free = await grid.submit(cmd='echo "[$CUDA_VISIBLE_DEVICES]"', shell=True)
    await grid.wait(cpu_free["id"])
    assert (await grid.output(cpu_free["id"]))["stdout"]["text"] == "[]\n"


async def test_a_task_no_live_worker_could_run_says_why_until_one_joins(grid: Grid) -> None:
    await grid.add_worker("g1", gpus=1, labels={"zone": "a"})
    big = await grid.submit(cmd="echo ran", shell=True, gpus=3)
    elsewhere = await grid.submit(cmd="true", shell=True, on="zone=b")

    async def reason(task_id: str) -> str | None:
        task = await grid.task(task_id)
        assert task["state"] == "queued"
        return task["unschedulable"]

    why = await eventually_async(lambda: reason(big["id"]), 10)
    assert why == "no live worker has what it asks: g1 lacks 3 GPUs (has 1)"
    assert await eventually_async(lambda: reason(elsewhere["id"]), 10) == (
        "no live worker matches zone=b"
    )
    await grid.add_worker("g4", gpus=4)
    done = await grid.wait(big["id"])
    assert (done["state"], done["worker_id"], done["unschedulable"]) == ("succeeded", "g4", None)
    assert await reason(elsewhere["id"]) == "no live worker matches zone=b"


async def test_pack_fills_one_worker_and_spread_shares_them(grid: Grid) -> None:
    await grid.add_worker("p1", slots=3)
    await grid.add_worker("p2", slots=3)
    body = {"cmd": "sleep 1", "shell": True}
    packed = await grid.submit_many([{**body, "placement": "pack"}] * 3)
    workers = [(await grid.wait_state(t["id"], "running"))["worker_id"] for t in packed]
    assert len(set(workers)) == 1  # all three on one worker
    for t in packed:
        await grid.wait(t["id"])
    spread = await grid.submit_many([body] * 2)
    workers = [(await grid.wait_state(t["id"], "running"))["worker_id"] for t in spread]
    assert sorted(workers) == ["p1", "p2"]


async def test_a_worker_runs_at_most_its_cap_of_a_class(grid: Grid) -> None:
    await grid.add_worker("capped", slots=4, max_tasks={"io": 1})
    io = await grid.submit_many([{"cmd": "sleep 0.5", "shell": True, "task_class": "io"}] * 2)
    free = await grid.submit(cmd="sleep 0.5", shell=True)
    first, second = [await grid.wait(t["id"]) for t in io]
    other = await grid.wait(free["id"])
    later, earlier = sorted([first, second], key=lambda t: t["started_at"], reverse=True)
    assert later["started_at"] >= earlier["finished_at"]  # one io task at a time
    assert other["started_at"] < earlier["finished_at"]  # a task of no class did not wait
