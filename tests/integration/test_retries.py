"""Retry policy, queue timeouts and idempotent submission."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import eventually_async
from tests.integration.conftest import Grid

pytestmark = pytest.mark.timeout(90)


def _secs(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


async def test_failures_are_retried_with_backoff_until_attempts_run_out(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(
        cmd="exit 3",
        shell=True,
        max_attempts=3,
        retry={"initial_s": 0.2, "factor": 2, "max_s": 5, "on_exit_codes": [3]},
    )
    done = await grid.wait(task["id"], 30)
    assert done["state"] == "failed"
    assert done["exit_code"] == 3
    attempts = done["attempts"]
    assert [(a["attempt"], a["state"], a["exit_code"]) for a in attempts] == [
        (1, "failed", 3),
        (2, "failed", 3),
        (3, "failed", 3),
    ]
    # the waits between tries follow the backoff: at least 0.2 s, then at least 0.4 s
    assert _secs(attempts[0]["finished_at"], attempts[1]["assigned_at"]) >= 0.2
    assert _secs(attempts[1]["finished_at"], attempts[2]["assigned_at"]) >= 0.4


async def test_a_retry_that_succeeds_ends_succeeded(grid: Grid, tmp_path: Path) -> None:
    await grid.add_worker("w1")
    counter = tmp_path / "n"
    script = f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ $n -ge 1 ]"
    task = await grid.submit(cmd=script, shell=True, max_attempts=3, retry={"initial_s": 0})
    done = await grid.wait(task["id"], 30)
    assert done["state"] == "succeeded"
    assert [a["state"] for a in done["attempts"]] == ["failed", "succeeded"]
    assert counter.read_text().strip() == "2"


async def test_exit_codes_outside_the_filter_are_not_retried(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(
        cmd="exit 4", shell=True, max_attempts=5, retry={"initial_s": 0, "on_exit_codes": [3]}
    )
    done = await grid.wait(task["id"])
    assert done["state"] == "failed"
    assert len(done["attempts"]) == 1


async def test_the_default_is_a_single_attempt(grid: Grid) -> None:
    await grid.add_worker("w1")
    done = await grid.wait((await grid.submit(cmd="exit 1", shell=True))["id"])
    assert done["state"] == "failed"
    assert done["max_attempts"] == 1
    assert len(done["attempts"]) == 1


async def test_timeouts_are_retried(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(cmd="sleep 10", timeout_s=0.3, max_attempts=2, retry={"initial_s": 0})
    done = await grid.wait(task["id"], 30)
    assert done["state"] == "timed_out"
    assert [a["state"] for a in done["attempts"]] == ["timed_out", "timed_out"]


async def test_a_lost_task_is_retried_on_another_worker(grid: Grid, tmp_path: Path) -> None:
    doomed = await grid.add_worker("doomed", slots=1)
    started = tmp_path / "started"
    task = await grid.submit(
        cmd=f'echo "$GRIDRUN_WORKER_ID" >> {started}; sleep 30',
        shell=True,
        max_attempts=2,
        retry={"initial_s": 0},
        timeout_s=60,
    )
    await eventually_async(started.exists)
    await grid.vanish(doomed)
    await grid.add_worker("rescuer", slots=1)
    await eventually_async(lambda: started.read_text().split() == ["doomed", "rescuer"], 20)
    (await grid.api.post(f"/v1/tasks/{task['id']}/cancel")).raise_for_status()
    done = await grid.wait(task["id"], 20)
    assert [(a["worker_id"], a["state"]) for a in done["attempts"]] == [
        ("doomed", "lost"),
        ("rescuer", "cancelled"),
    ]


async def test_a_task_not_started_in_time_expires(grid: Grid) -> None:
    task = await grid.submit(cmd="true", queue_timeout_s=0.5)
    keep = await grid.submit(cmd="true")
    done = await grid.wait(task["id"], 10)
    assert done["state"] == "expired"
    assert "queue timeout" in done["error"]
    await grid.add_worker("w1")
    assert (await grid.wait(keep["id"]))["state"] == "succeeded"
    assert (await grid.task(task["id"]))["state"] == "expired"  # never ran


async def test_idempotency_key_returns_the_same_task(grid: Grid) -> None:
    first = await grid.api.post("/v1/tasks", json={"cmd": "true", "idempotency_key": "job-1"})
    again = await grid.api.post("/v1/tasks", json={"cmd": "false", "idempotency_key": "job-1"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["cmd"] == "true"  # the original stands
    batch = await grid.submit_many(
        [
            {"cmd": "true", "idempotency_key": "job-1"},
            {"cmd": "true", "idempotency_key": "job-2"},
            {"cmd": "true", "idempotency_key": "job-2"},
            {"cmd": "true"},
        ]
    )
    assert batch[0]["id"] == first.json()["id"]
    assert batch[1]["id"] == batch[2]["id"] != batch[0]["id"]
    # and across a master restart
    await grid.stop_master()
    await grid.start_master()
    later = await grid.api.post("/v1/tasks", json={"cmd": "true", "idempotency_key": "job-2"})
    assert later.status_code == 200
    assert later.json()["id"] == batch[1]["id"]
    listing = (await grid.api.get("/v1/tasks", params={"limit": 100})).json()["tasks"]
    assert len(listing) == 3  # job-1, job-2 and the unkeyed one


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"cmd": "true", "max_attempts": 0}, "max_attempts"),
        ({"cmd": "true", "max_attempts": 101}, "max_attempts"),
        ({"cmd": "true", "retry": {"factor": 0.5}}, "factor"),
        ({"cmd": "true", "retry": {"colour": 1}}, "colour"),
        ({"cmd": "true", "queue_timeout_s": 0}, "queue_timeout_s"),
        ({"cmd": "true", "idempotency_key": ""}, "idempotency_key"),
    ],
)
async def test_bad_retry_settings_are_422(grid: Grid, body: dict, needle: str) -> None:  # type: ignore[type-arg]
    response = await grid.api.post("/v1/tasks", json=body)
    assert response.status_code == 422, response.text
    assert needle in response.json()["detail"]
