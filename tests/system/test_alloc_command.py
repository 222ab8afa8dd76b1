"""The command backend: a command of the user's own starts an allocation's workers (here a
local `nohup`, as ssh to a host would), reading their script on stdin; `--stop-command`
cancels one. No scheduler to ask: an allocation runs until its workers, once joined, are gone."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridrun.auth import digest
from tests.helpers import eventually, pid_alive
from tests.system.conftest import SystemGrid
from tests.system.test_alloc_slurm import ADMIN, JOIN, api, submit

pytestmark = [pytest.mark.system, pytest.mark.slow]

START = (
    'd=$(mktemp -d); cat > "$d/w.sh"; nohup sh "$d/w.sh" > "$d/log" 2>&1 < /dev/null &'
    ' echo $! >> "$TMPDIR/started.pids"; echo $!'
)


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[SystemGrid]:
    grid = SystemGrid(tmp_path)
    grid.env.update(
        TMPDIR=str(tmp_path),
        GRIDRUN_TOKENS=f"admin:admin:{digest(ADMIN)},join:worker:{digest(JOIN)}",
        GRIDRUN_TOKEN=ADMIN,
    )
    started: list[int] = []
    grid.started = started  # type: ignore[attr-defined]
    try:
        yield grid
    finally:
        grid.close()
        pids = tmp_path / "started.pids"  # the workers the start command left running
        started += [int(p) for p in pids.read_text().split()] if pids.exists() else []
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


ALLOW = ("--alloc-backend", "slurm", "--alloc-backend", "command")


def test_a_command_starts_the_workers_they_leave_when_idle_and_rm_stops_them(
    grid: SystemGrid,
) -> None:
    grid.start_master("--alloc-interval", "1", *ALLOW)
    added = grid.cli(
        "alloc", "add", "command", "--name", "local", "--time-limit", "10m", "--slots", "1",
        "--idle-timeout", "3s", "--stop-command", "kill", "--", "sh", "-c", START,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr

    def allocations() -> list[dict[str, Any]]:
        return list(api(grid, "GET", "/v1/alloc/queues/local")["allocations"])

    first = submit(grid, "--timeout", "60", "--", "true")
    task = eventually(
        lambda: (t := api(grid, "GET", f"/v1/tasks/{first}"))["state"] == "succeeded" and t,
        60, 0.3,
    )  # fmt: skip
    [allocation] = allocations()
    pid = int(allocation["backend_id"])  # what the start command printed
    grid.started.append(pid)  # type: ignore[attr-defined]
    assert task["worker_id"] == f"alloc-{allocation['id']}-0"
    # idle for 3 s, it leaves: the allocation has ended, its process is gone
    ended = eventually(lambda: allocations()[0]["state"] == "ended" and allocations()[0], 30, 0.3)
    assert ended["error"] == "its workers left"
    eventually(lambda: not pid_alive(pid), 10, 0.2)
    # a second one, removed while its worker runs: the stop command ends it
    second = submit(grid, "--timeout", "60", "--", "true")
    eventually(lambda: api(grid, "GET", f"/v1/tasks/{second}")["state"] == "succeeded", 60, 0.3)
    running = next(a for a in allocations() if a["state"] in ("queued", "running"))
    pid = int(running["backend_id"])
    grid.started.append(pid)  # type: ignore[attr-defined]
    assert pid_alive(pid)
    removed = grid.cli("alloc", "rm", "local")
    assert removed.returncode == 0, removed.stderr
    eventually(lambda: not pid_alive(pid), 30, 0.2)


def test_the_command_backend_is_the_operators_to_allow(grid: SystemGrid) -> None:
    """It runs commands on the master's host: an admin token alone may not use it."""
    grid.start_master("--alloc-interval", "1")
    refused = grid.cli("alloc", "add", "command", "--name", "c", "--time-limit", "10m",
                       "--", "sh", "-c", "touch pwned")  # fmt: skip
    assert refused.returncode == 1
    assert "allows the allocation backends slurm, not command" in refused.stderr
    assert api(grid, "GET", "/v1/alloc/queues")["queues"] == []
    assert not (grid.tmp / "pwned").exists()


def test_a_start_command_that_fails_pauses_the_queue(grid: SystemGrid) -> None:
    grid.start_master("--alloc-interval", "1", *ALLOW)
    missing = grid.cli("alloc", "add", "command", "--name", "none", "--time-limit", "10m",
                       "--", "no-such-start-command")  # fmt: skip
    assert missing.returncode == 1
    assert "no-such-start-command: no such command" in missing.stderr
    added = grid.cli("alloc", "add", "command", "--name", "bad", "--time-limit", "10m",
                     "--", "sh", "-c", "echo no capacity in zone b >&2; exit 3")  # fmt: skip
    assert added.returncode == 0, added.stderr
    submit(grid, "--timeout", "60", "--", "true")

    def paused() -> dict[str, Any] | None:
        queue: dict[str, Any] = api(grid, "GET", "/v1/alloc/queues/bad")
        return queue if queue["state"] == "paused" else None

    queue = eventually(paused, 60, 0.5)
    assert "sh failed: no capacity in zone b" in queue["reason"]
    assert queue["failures"] == 3


# the worker killed (-9) five seconds after it starts: it joins, takes a task, and is gone
DYING = (
    'd=$(mktemp -d); cat > "$d/w.sh"; nohup sh -c \'sh "$1" & p=$!;'
    ' echo $p >> "$TMPDIR/started.pids"; sleep 5; kill -9 $p\' dying "$d/w.sh"'
    ' > "$d/log" 2>&1 < /dev/null & echo $!'
)


def test_workers_that_die_soon_after_joining_fail_their_allocations_and_pause_the_queue(
    grid: SystemGrid,
) -> None:
    """Not idle, not at their time limit: workers all gone within a minute of joining (a
    crash, an OOM kill) are a failure of their allocation, as one whose workers never joined,
    and three in a row pause the queue instead of starting dying workers for ever."""
    grid.start_master("--alloc-interval", "1", *ALLOW)
    added = grid.cli(
        "alloc", "add", "command", "--name", "dying", "--time-limit", "10m", "--slots", "1",
        "--idle-timeout", "10m", "--", "sh", "-c", DYING,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    for _ in range(4):
        submit(grid, "--timeout", "120", "--", "sleep", "60")

    def paused() -> dict[str, Any] | None:
        queue: dict[str, Any] = api(grid, "GET", "/v1/alloc/queues/dying")
        return queue if queue["state"] == "paused" else None

    queue = eventually(paused, 120, 0.5)
    assert queue["failures"] == 3
    assert "were gone within" in queue["reason"], queue["reason"]
    assert "wherever its start command put it" in queue["reason"]
    failed = [a for a in queue["allocations"] if a["state"] == "failed"]
    assert len(failed) >= 3
    assert all(a["connected_at"] is not None for a in failed)  # they had joined


def test_a_master_restart_does_not_end_an_allocation_whose_workers_come_back(
    grid: SystemGrid,
) -> None:
    """No scheduler to ask: the allocation's workers, gone a moment while the master
    restarts (a graceful stop records them offline), must not count as having left for
    good: their allocation, and so their credential, lives on, and they take work again."""
    grid.start_master("--alloc-interval", "1", *ALLOW)
    added = grid.cli(
        "alloc", "add", "command", "--name", "local", "--time-limit", "10m", "--slots", "1",
        "--idle-timeout", "10m", "--stop-command", "kill", "--", "sh", "-c", START,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    first = submit(grid, "--timeout", "60", "--", "true")
    eventually(lambda: api(grid, "GET", f"/v1/tasks/{first}")["state"] == "succeeded", 60, 0.3)
    [allocation] = api(grid, "GET", "/v1/alloc/queues/local")["allocations"]
    grid.started.append(int(allocation["backend_id"]))  # type: ignore[attr-defined]
    worker = api(grid, "GET", f"/v1/tasks/{first}")["worker_id"]

    def kept() -> dict[str, Any]:
        [again] = api(grid, "GET", "/v1/alloc/queues/local")["allocations"]
        assert (again["id"], again["state"]) == (allocation["id"], "running"), again
        assert again["connected_at"] is not None
        return dict(again)

    eventually(kept, 10, 0.3)  # its worker seen joined
    grid.kill_master(signal.SIGTERM)
    time.sleep(10)  # down longer than the allocator's lease (8 s): the new master acts at once
    grid.start_master("--alloc-interval", "1", *ALLOW)
    second = submit(grid, "--timeout", "60", "--", "true")
    done = eventually(
        lambda: (t := api(grid, "GET", f"/v1/tasks/{second}"))["state"] == "succeeded" and t,
        60, 0.3,
    )  # fmt: skip
    assert done["worker_id"] == worker, grid.log("master")
    eventually(kept, 10, 0.3)
    time.sleep(3)  # and it stays so
    assert kept()["workers_online"] == 1
