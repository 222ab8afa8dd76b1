"""Cancel: a queued task at once; a running one by killing its whole process group."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import eventually_async, pid_alive, read_pid, wait_file_async
from tests.integration.conftest import Grid

pytestmark = pytest.mark.timeout(60)


async def test_cancel_a_queued_task_is_immediate_and_it_never_runs(
    grid: Grid, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    task = await grid.submit(cmd=f"touch {marker}")  # no worker yet: it stays queued
    response = await grid.api.post(f"/v1/tasks/{task['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    await grid.add_worker("w1")
    probe = await grid.submit(cmd="true")
    await grid.wait(probe["id"])
    assert (await grid.task(task["id"]))["state"] == "cancelled"
    assert not marker.exists()


async def test_cancel_a_running_task_kills_the_process_and_its_children(
    grid: Grid, tmp_path: Path
) -> None:
    await grid.add_worker("w1")
    main_pid, child_pid = tmp_path / "main.pid", tmp_path / "child.pid"
    script = f"sleep 300 & echo $! > {child_pid}; echo $$ > {main_pid}; wait"
    task = await grid.submit(cmd=script, shell=True)
    await wait_file_async(main_pid)
    await wait_file_async(child_pid)
    pids = [read_pid(main_pid), read_pid(child_pid)]
    assert all(pid_alive(p) for p in pids)
    response = await grid.api.post(f"/v1/tasks/{task['id']}/cancel")
    assert response.status_code == 200
    done = await grid.wait(task["id"])
    assert done["state"] == "cancelled"
    await eventually_async(lambda: not any(pid_alive(p) for p in pids), 5)


async def test_cancel_escalates_to_sigkill_when_sigterm_is_ignored(
    grid: Grid, tmp_path: Path
) -> None:
    await grid.add_worker("w1")
    pid_file = tmp_path / "pid"
    task = await grid.submit(
        cmd=f"trap '' TERM; echo $$ > {pid_file}; while true; do sleep 0.05; done", shell=True
    )
    await wait_file_async(pid_file)
    await grid.api.post(f"/v1/tasks/{task['id']}/cancel")
    done = await grid.wait(task["id"])  # kill_grace_s is 1s in the test grid
    assert done["state"] == "cancelled"
    assert done["signal"] == 9
    await eventually_async(lambda: not pid_alive(read_pid(pid_file)), 5)


async def test_cancel_of_a_finished_task_is_a_conflict(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(cmd="true")
    await grid.wait(task["id"])
    response = await grid.api.post(f"/v1/tasks/{task['id']}/cancel")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert "succeeded" in response.json()["detail"]
    queued = await grid.submit(cmd="true", labels={"nowhere": "1"})
    assert (await grid.api.post(f"/v1/tasks/{queued['id']}/cancel")).status_code == 200
    again = await grid.api.post(f"/v1/tasks/{queued['id']}/cancel")  # a second cancel
    assert again.status_code == 409
    assert again.json()["detail"] == f"task {queued['id']} has already ended (cancelled)"


async def test_cancel_sends_sigterm_to_the_whole_group_first(grid: Grid, tmp_path: Path) -> None:
    """Not only the main process: a child that traps TERM (and records it) got it too, before
    any SIGKILL, so a task's helpers can clean up."""
    await grid.add_worker("w1")
    ready, trapped = tmp_path / "ready", tmp_path / "trapped"
    forever = "while :; do sleep 0.1; done"
    child = f"trap 'echo term > {trapped}; exit 0' TERM; echo up > {ready}; {forever}"
    # the main process waits for its child on TERM too: once it exits, whatever is left of the
    # group is killed at once, and the child's trap might not have run yet
    task = await grid.submit(cmd=f'trap wait TERM; sh -c "{child}" & wait', shell=True)
    await wait_file_async(ready)
    assert (await grid.api.post(f"/v1/tasks/{task['id']}/cancel")).status_code == 200
    assert (await grid.wait(task["id"]))["state"] == "cancelled"
    assert await wait_file_async(trapped) == "term"
