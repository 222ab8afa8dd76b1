"""Two masters on one PostgreSQL database, both active, in one event loop over real sockets:
work submitted to one runs on the other's workers, cancels and drains cross over, clients
waiting on one hear of results reported to the other, and workers fail over."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import pg
from tests.helpers import claim, eventually_async
from tests.integration.conftest import Grid

pytestmark = [pytest.mark.pg]


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Grid, Grid]]:
    async with pg.database() as url:
        a = Grid(tmp=tmp_path / "a", master_overrides={"db": url})
        b = Grid(tmp=tmp_path / "b", master_overrides={"db": url})
        try:
            await a.start_master()
            await b.start_master()
            yield a, b
        finally:
            await a.close()
            await b.close()


async def test_a_task_submitted_to_one_master_runs_on_the_others_worker(
    pair: tuple[Grid, Grid],
) -> None:
    a, b = pair
    await b.add_worker("wb", slots=2)
    task = await a.submit(cmd="echo hello via b", shell=True)
    done = await a.wait(task["id"], timeout=20)  # A hears B's result through a notice
    assert (done["state"], done["worker_id"]) == ("succeeded", "wb")
    out = await a.output(task["id"])
    assert out["stdout"]["text"] == "hello via b\n"
    many = await a.submit_many([{"cmd": f"echo {i}", "shell": True} for i in range(40)])
    for t in many:
        assert (await b.wait(t["id"]))["state"] == "succeeded"


async def test_a_cancel_sent_to_one_master_stops_the_process_on_the_others_worker(
    pair: tuple[Grid, Grid],
) -> None:
    a, b = pair
    agent = await b.add_worker("wb")
    task = await b.submit(cmd="sleep 60", shell=True)
    await a.wait_state(task["id"], "running")
    response = await a.api.post(f"/v1/tasks/{task['id']}/cancel")
    assert response.status_code == 200, response.text
    done = await a.wait(task["id"], timeout=15)
    assert done["state"] == "cancelled"
    await eventually_async(lambda: not agent.executions, 10)  # the process is gone


async def test_a_drain_sent_to_one_master_reaches_the_others_worker(
    pair: tuple[Grid, Grid],
) -> None:
    a, b = pair
    await b.add_worker("wb")
    response = await a.api.post("/v1/workers/wb/drain")
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "draining"

    async def offline() -> bool:
        workers = (await a.api.get("/v1/workers")).json()["workers"]
        return any(w["id"] == "wb" and w["state"] == "offline" for w in workers)

    await eventually_async(offline, 40)


async def test_a_worker_fails_over_and_its_running_task_finishes_through_the_other_master(
    pair: tuple[Grid, Grid],
) -> None:
    a, b = pair
    agent = await a.add_worker("wf", master=f"127.0.0.1:{a.grpc_port},127.0.0.1:{b.grpc_port}")
    task = await a.submit(cmd="sleep 1.5; echo survived", shell=True)
    await b.wait_state(task["id"], "running")
    await a.stop_master()  # its workers must find the other master
    await eventually_async(lambda: agent.master_address.endswith(f":{b.grpc_port}"), 15)
    done = await b.wait(task["id"], timeout=20)
    assert (done["state"], done["attempt"]) == ("succeeded", 1)
    assert (await b.output(task["id"]))["stdout"]["text"] == "survived\n"
    workers = (await b.api.get("/v1/workers")).json()["workers"]
    assert [(w["id"], w["state"]) for w in workers] == [("wf", "online")]
    again = await b.submit(cmd="echo again", shell=True)
    assert (await b.wait(again["id"]))["state"] == "succeeded"


async def test_lost_database_connections_are_replaced_without_losing_work(
    pair: tuple[Grid, Grid],
) -> None:
    a, b = pair
    await a.add_worker("wa", slots=2)
    await b.add_worker("wb", slots=2)
    first = await a.submit_many([{"cmd": "true", "shell": True} for _ in range(30)])
    url = str(a.master_overrides["db"])
    ended = await pg.terminate_connections(url)
    assert ended >= 2  # both masters' pools and listeners
    second = await b.submit_many([{"cmd": "true", "shell": True} for _ in range(30)])
    await asyncio.sleep(0)
    for t in first + second:
        assert (await a.wait(t["id"], timeout=30))["state"] == "succeeded"
    health = await a.api.get("/healthz")
    assert health.status_code == 200, health.text


async def test_any_master_ends_the_attempts_of_a_worker_whose_lease_ran_out(
    pair: tuple[Grid, Grid], tmp_path: Path
) -> None:
    a, b = pair
    agent = await a.add_worker("wa")
    started = tmp_path / "started"
    task = await b.submit(cmd=f"touch {started}; sleep 60", shell=True)
    await eventually_async(started.exists, 10)
    await a.vanish(agent)  # the worker's machine dies, and then its master too
    await a.stop_master()
    done = await b.wait(task["id"], timeout=20)  # B judges it from the lease in the database
    assert done["state"] == "lost"
    assert "unreachable for more than 3s" in done["error"]


async def test_an_assignment_no_stream_carried_goes_back_to_the_queue(
    pair: tuple[Grid, Grid],
) -> None:
    # A claim whose COMMIT was cut off looks done to nobody: the task is assigned to a
    # connected worker that never got it. The master holding the worker puts it back.
    a, _ = pair
    await a.add_worker("wa")
    task = await a.submit(cmd="true", shell=True, labels={"pool": "nobody-has-it"})
    assert a.master is not None
    store = a.master.store
    (claimed,) = await claim(store, [(task["id"], "wa")], now=a.master.clock.now_ms())
    assert claimed.state.value == "assigned"

    async def requeued() -> bool:
        return (await a.task(task["id"]))["state"] == "queued"

    await eventually_async(requeued, 10)  # one liveness timeout (3 s) later
    attempts = (await a.task(task["id"]))["attempts"]
    assert [(x["attempt"], x["state"]) for x in attempts] == [(1, "queued")]


async def test_a_concurrency_limit_holds_across_two_masters(
    pair: tuple[Grid, Grid], tmp_path: Path
) -> None:
    """Each master dispatches to its own workers; a key with limit 1 still runs one at a
    time across both (their claims of keyed tasks are serialized in the database)."""
    a, b = pair
    await a.add_worker("wa", slots=2, labels={"side": "a"})
    await b.add_worker("wb", slots=2, labels={"side": "b"})
    log = tmp_path / "spans"
    log.mkdir()
    stamp = "echo $(date +%s%N) > " + str(log) + "/$GRIDRUN_TASK_ID"
    body = {
        "cmd": f"{stamp}.start; sleep 0.1; {stamp}.end",
        "shell": True,
        "concurrency_key": "deploy",
        "concurrency_limit": 1,
    }
    sides = [{**body, "labels": {"side": side}} for side in "ab" * 6]  # each master's worker
    tasks = await a.submit_many(sides)
    workers = set()
    for t in tasks:
        done = await a.wait(t["id"], timeout=60)
        assert done["state"] == "succeeded"
        workers.add(done["worker_id"])
    spans = sorted(
        (int((log / f"{t['id']}.start").read_text()), int((log / f"{t['id']}.end").read_text()))
        for t in tasks
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start
    assert workers == {"wa", "wb"}  # both masters dispatched
