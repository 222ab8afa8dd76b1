"""Watching the grid: live output over Server-Sent Events, and Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

import httpx

from tests.helpers import eventually_async
from tests.integration.conftest import Grid


async def events(
    api: httpx.AsyncClient, task_id: str, got: list[tuple[str, dict[str, Any]]] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Read a follow stream to its end; (event, data) pairs in order, also appended to `got`
    as they arrive (so a test can wait for the first)."""
    got = [] if got is None else got
    async with api.stream("GET", f"/v1/tasks/{task_id}/output", params={"follow": "true"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                assert event is not None
                got.append((event, json.loads(line[6:])))
    return got


def text(got: list[tuple[str, dict[str, Any]]], stream: str) -> str:
    return "".join(d["text"] for e, d in got if e == "output" and d["stream"] == stream)


async def test_follow_streams_output_live_and_ends_with_the_task(grid: Grid) -> None:
    await grid.add_worker("w1")
    gate = grid.tmp / "gate"
    task = await grid.submit(
        cmd=f"echo first; echo oops >&2; while [ ! -e {gate} ]; do sleep 0.05; done; echo last",
        shell=True,
    )
    follower = asyncio.create_task(events(grid.api, task["id"]))
    await grid.wait_state(task["id"], "running")

    async def first_line_arrived() -> bool:
        out = await grid.output(task["id"])
        return bool(out["stdout"]["text"])

    await eventually_async(first_line_arrived)
    await asyncio.sleep(0.3)  # a while for it to end if it wrongly would (nothing to wait for)
    assert not follower.done()  # still following: the task runs on
    gate.touch()
    got = await asyncio.wait_for(follower, 20)
    assert text(got, "stdout") == "first\nlast\n"
    assert text(got, "stderr") == "oops\n"
    states = [d["state"] for e, d in got if e == "state"]
    assert states[-1] == "succeeded"
    assert "running" in states
    assert got[-1] == ("end", {**got[-1][1], "state": "succeeded", "exit_code": 0})
    # offsets run on without holes
    offsets = [d["offset"] for e, d in got if e == "output" and d["stream"] == "stdout"]
    assert offsets[0] == 0
    assert offsets == sorted(offsets)


async def test_follow_of_a_finished_task_replays_and_ends_at_once(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(argv=["printf", "h\u00e9llo"])
    await grid.wait(task["id"])
    got = await asyncio.wait_for(events(grid.api, task["id"]), 10)
    assert text(got, "stdout") == "h\u00e9llo"
    assert [e for e, _ in got] == ["state", "output", "end"]


async def test_follow_reports_bytes_dropped_past_the_output_cap(grid: Grid) -> None:
    await grid.stop_master()
    await grid.start_master(output_cap=1000)
    await grid.add_worker("w1")
    task = await grid.submit(cmd="head -c 5000 /dev/zero | tr '\\0' x", shell=True)
    await grid.wait(task["id"])
    got = await asyncio.wait_for(events(grid.api, task["id"]), 10)
    gaps = [d for e, d in got if e == "gap"]
    assert gaps == [{"stream": "stdout", "dropped": 4000}]
    assert text(got, "stdout") == "x" * 1000


async def test_follow_of_an_unknown_task_is_404(grid: Grid) -> None:
    response = await grid.api.get("/v1/tasks/nope/output", params={"follow": "true"})
    assert response.status_code == 404
    assert "no task with id 'nope'" in response.json()["detail"]


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus text format."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = (
        rf"^{re.escape(name)}(?:\{{{re.escape(want)}\}})? (\S+)$" if want else rf"^{name} (\S+)$"
    )
    found = re.findall(pattern, metrics, re.M)
    assert len(found) == 1, (name, labels)
    return float(found[0])


async def test_metrics_after_known_work(grid: Grid) -> None:
    await grid.add_worker("w1", slots=2)
    ok = [await grid.submit(cmd="true") for _ in range(3)]
    bad = await grid.submit(cmd="exit 4", shell=True)
    for task in [*ok, bad]:
        await grid.wait(task["id"])
    running = await grid.submit(cmd="sleep 600")
    await grid.wait_state(running["id"], "running")
    queued = await grid.submit(cmd="true", labels={"gpu": "none-here"})
    response = await grid.api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    m = response.text
    assert sample(m, "gridrun_tasks_submitted_total") == 6
    assert sample(m, "gridrun_tasks_finished_total", state="succeeded") == 3
    assert sample(m, "gridrun_tasks_finished_total", state="failed") == 1
    assert sample(m, "gridrun_tasks", state="queued") == 1
    assert sample(m, "gridrun_tasks", state="running") == 1
    assert sample(m, "gridrun_queue_depth") == 1
    assert sample(m, "gridrun_tasks_running") == 1
    assert sample(m, "gridrun_workers", state="online") == 1
    assert sample(m, "gridrun_workers", state="offline") == 0
    assert sample(m, "gridrun_worker_streams") == 1
    assert sample(m, "gridrun_dispatch_latency_seconds_count") == 4
    assert sample(m, "gridrun_run_duration_seconds_count") == 4
    assert sample(m, "gridrun_stale_reports_dropped_total") == 0
    await grid.api.post(f"/v1/tasks/{running['id']}/cancel")
    await grid.api.post(f"/v1/tasks/{queued['id']}/cancel")
    await grid.wait(running["id"])
    m = (await grid.api.get("/metrics")).text
    assert sample(m, "gridrun_tasks_finished_total", state="cancelled") == 2
    assert sample(m, "gridrun_queue_depth") == 0


async def test_a_master_shutdown_ends_open_followers(grid: Grid) -> None:
    task = await grid.submit(cmd="true")  # no worker: it stays queued
    seen: list[tuple[str, dict[str, Any]]] = []
    follower = asyncio.create_task(events(grid.api, task["id"], seen))
    await eventually_async(lambda: bool(seen))  # following: its first state has arrived
    loop = asyncio.get_running_loop()
    started = loop.time()
    await grid.stop_master()
    got = await asyncio.wait_for(follower, 10)
    assert loop.time() - started < 5  # not the shutdown grace or a keep-alive timeout
    assert [e for e, _ in got] == ["state"]  # no `end`: the task did not end


async def test_tasks_can_be_listed_by_label(grid: Grid) -> None:
    a = await grid.submit(cmd="true", labels={"zone": "b", "gpu": "a100"})
    await grid.submit(cmd="true", labels={"zone": "c"})
    await grid.submit(cmd="true")

    async def ids(*labels: str) -> list[str]:
        response = await grid.api.get("/v1/tasks", params=[("label", x) for x in labels])
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["tasks"]]

    assert await ids("zone=b") == [a["id"]]
    assert await ids("zone=b", "gpu=a100") == [a["id"]]
    assert await ids("zone=b", "gpu=h100") == []
    assert len(await ids()) == 3
    bad = await grid.api.get("/v1/tasks", params={"label": "zone"})
    assert bad.status_code == 422
    assert "must look like key=value" in bad.json()["detail"]


async def test_the_overview_stream_and_the_dashboard_page(grid: Grid) -> None:
    await grid.add_worker("w1", slots=3)
    task = await grid.submit(cmd="true")
    await grid.wait(task["id"])
    await grid.submit(cmd="true", labels={"nowhere": "1"})
    async with grid.api.stream("GET", "/v1/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        assert await anext(lines) == "event: overview"
        data = json.loads((await anext(lines))[len("data: ") :])
    assert data["workers"] == {"online": 1, "draining": 0, "offline": 0}
    (worker,) = (await grid.api.get("/v1/workers")).json()["workers"]
    assert worker["resources"]["cpus"] == os.cpu_count()
    assert worker["resources"]["memory_mb"] > 0
    assert (data["slots"], data["slots_used"], data["queue_depth"]) == (3, 0, 1)
    assert data["tasks"]["succeeded"] == 1
    assert sum(data["throughput"]["finished"]) == 1
    page = await grid.api.get("/")
    assert page.status_code == 200
    assert '<script src="/static/app.js">' in page.text
    script = await grid.api.get("/static/app.js")
    assert script.status_code == 200
    assert "innerHTML" not in script.text  # user text only ever goes in as text


async def test_the_history_the_charts_draw(grid: Grid) -> None:
    """GET /v1/history: the grid now as the live end of the samples, what ended in them
    (failures apart), and the latency and duration of each end in the metrics' buckets."""
    await grid.add_worker("w1", slots=3)
    done = [await grid.submit(cmd="true"), await grid.submit(cmd="exit 3", shell=True)]
    for task in done:
        await grid.wait(task["id"])
    await grid.submit(cmd="true", labels={"nowhere": "1"})
    history = (await grid.api.get("/v1/history")).json()
    assert history["step_s"] == 5
    now = history["samples"][-1]
    assert (now["queued"], now["running"], now["slots"], now["slots_used"]) == (1, 0, 3, 0)
    assert sum(s["finished"] for s in history["samples"]) == 2
    assert sum(s["failed"] for s in history["samples"]) == 1
    for name in ("latency", "duration"):
        distribution = history[name]
        assert len(distribution["counts"]) == len(distribution["bounds_s"]) + 1
        assert sum(distribution["counts"]) == 2
    assert history["samples"] == sorted(history["samples"], key=lambda s: s["at"])
