"""Allocation queues on a real Slurm (tests/slurm.py: munged, slurmctld and slurmd of the
tests' own): a real `gridrun master` submits `gridrun worker`s through sbatch as queued work
needs them, and they join it, run the tasks and leave."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridrun.auth import digest
from tests.helpers import eventually
from tests.slurm import Slurm, missing
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.slow]

ADMIN, JOIN = "admin-token-for-the-slurm-tests", "join-token-for-the-slurm-tests"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slurm]:
    why = missing()
    if why is not None:
        pytest.skip(why)
    cluster = Slurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def grid(slurm: Slurm, tmp_path: Path) -> Iterator[SystemGrid]:
    """A grid whose master reaches the tests' Slurm, with tokens: an admin's for the CLI and
    a join token the allocations' workers do not have (they join with their own)."""
    for job in slurm.active():  # what an earlier test left is not this one's
        slurm._run("scancel", job)
    eventually(lambda: not slurm.active(), 20, 0.2)
    grid = SystemGrid(tmp_path)
    grid.env.update(
        SLURM_CONF=str(slurm.conf),
        TMPDIR=str(tmp_path),
        GRIDRUN_TOKENS=f"admin:admin:{digest(ADMIN)},join:worker:{digest(JOIN)}",
        GRIDRUN_TOKEN=ADMIN,
    )
    try:
        yield grid
    finally:
        grid.close()


def start(grid: SystemGrid) -> None:
    grid.start_master("--alloc-interval", "1", "--alloc-connect-timeout", "120")


def add_queue(grid: SystemGrid, name: str, *extra: str, sbatch: tuple[str, ...] = ()) -> None:
    result = grid.cli(
        "alloc", "add", "slurm", "--name", name, "--time-limit", "10m", *extra, "--", *sbatch
    )
    assert result.returncode == 0, result.stderr


def api(grid: SystemGrid, method: str, path: str, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    response = httpx.request(method, grid.url + path, headers=headers, timeout=30, **kwargs)
    assert response.status_code < 400, response.text
    return response.json() if response.content else None


def submit(grid: SystemGrid, *args: str) -> str:
    result = grid.cli("submit", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def task_of(grid: SystemGrid, task_id: str) -> dict[str, Any]:
    return dict(api(grid, "GET", f"/v1/tasks/{task_id}"))


def allocations(grid: SystemGrid, queue: str) -> list[dict[str, Any]]:
    return list(api(grid, "GET", f"/v1/alloc/queues/{queue}")["allocations"])


def alloc_workers(grid: SystemGrid) -> dict[str, str]:
    workers = api(grid, "GET", "/v1/workers")["workers"]
    return {w["id"]: w["state"] for w in workers if w["id"].startswith("alloc-")}


def test_queued_work_brings_workers_up_within_the_cap_and_idle_ones_leave(
    grid: SystemGrid, slurm: Slurm
) -> None:
    start(grid)
    add_queue(grid, "cpu", "--max-workers", "2", "--backlog", "2", "--slots", "1",
              "--idle-timeout", "4s")  # fmt: skip
    ids = [submit(grid, "--timeout", "120", "--", "sleep", "2") for _ in range(5)]
    most = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the cap holds all the while
        most = max(most, len(slurm.active()))
        assert most <= 2, slurm.jobs()
        tasks = [task_of(grid, i) for i in ids]
        if all(t["state"] == "succeeded" for t in tasks):
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"tasks did not all succeed: {tasks}; {grid.log('master')}")
    assert most == 2  # both were wanted: five tasks for 1-slot workers
    assert {t["worker_id"] for t in tasks} <= set(alloc_workers(grid))
    # idle for 4 s, the workers leave; their Slurm jobs end, and the allocations with them
    eventually(lambda: not slurm.active(), 60, 0.5)

    def ended() -> list[dict[str, Any]] | None:
        done = [a for a in allocations(grid, "cpu") if a["state"] == "ended"]
        return done if len(done) == 2 else None

    done = eventually(ended, 30, 0.5)
    assert all(a["backend_id"] in slurm.jobs() for a in done)
    assert all(slurm.jobs()[a["backend_id"]] == "COMPLETED" for a in done)
    eventually(lambda: set(alloc_workers(grid).values()) == {"offline"}, 30, 0.5)
    info = grid.cli("alloc", "info", "cpu")
    assert info.returncode == 0, info.stderr
    assert done[0]["backend_id"] in info.stdout, info.stdout
    # nothing queued: nothing more is submitted
    time.sleep(3)
    assert len(allocations(grid, "cpu")) == 2


def test_no_allocation_for_tasks_no_queue_could_take_or_that_wait(
    grid: SystemGrid, slurm: Slurm
) -> None:
    start(grid)
    add_queue(grid, "small", "--slots", "1", "--label", "zone=a")
    unplaceable = {
        "gpu": submit(grid, "--timeout", "60", "--on", "gpu=1", "--", "true"),
        "no timeout": submit(grid, "--on", "zone=a", "--", "true"),
        "too long": submit(grid, "--timeout", "7200", "--", "true"),
    }
    waiting = submit(grid, "--timeout", "60", "--after", unplaceable["gpu"], "--", "true")
    time.sleep(6)  # six looks of the allocator
    assert allocations(grid, "small") == []
    reasons = {k: task_of(grid, i)["unschedulable"] or "" for k, i in unplaceable.items()}
    assert "no allocation queue could take it" in reasons["gpu"], reasons
    assert "do not match gpu=1" in reasons["gpu"]
    assert "it has no timeout" in reasons["no timeout"]
    assert "beyond" in reasons["too long"]
    assert task_of(grid, waiting)["state"] == "waiting"
    # one it could take, and a worker comes for it
    fits = submit(grid, "--timeout", "60", "--on", "zone=a", "--", "true")
    assert eventually(lambda: task_of(grid, fits)["state"] == "succeeded", 90, 0.5)
    assert len(allocations(grid, "small")) == 1


def test_dry_run_says_what_sbatch_said(grid: SystemGrid, slurm: Slurm) -> None:
    start(grid)
    bad = grid.cli("alloc", "dry-run", "slurm", "--time-limit", "10m", "--", "-p", "nope")
    assert bad.returncode == 1
    assert "Invalid partition" in bad.stderr, bad.stderr
    refused = grid.cli("alloc", "add", "slurm", "--name", "nope", "--time-limit", "10m",
                       "--", "--partition=nope")  # fmt: skip
    assert refused.returncode == 1
    assert "Invalid partition" in refused.stderr
    assert api(grid, "GET", "/v1/alloc/queues")["queues"] == []  # not added
    good = grid.cli("alloc", "dry-run", "slurm", "--time-limit", "10m", "--", "-p", "debug")
    assert good.returncode == 0, good.stderr
    job = re.search(r"job (\d+)", good.stdout)
    assert job is not None
    assert slurm.jobs()[job.group(1)] == "CANCELLED"
    assert not slurm.active()
    # a read or submit token may not touch the queues
    response = httpx.get(f"{grid.url}/v1/alloc/queues", timeout=5)
    assert response.status_code == 401


def test_repeated_sbatch_failures_pause_the_queue_with_the_reason(
    grid: SystemGrid, slurm: Slurm
) -> None:
    start(grid)
    add_queue(grid, "broken", "--no-dry-run", sbatch=("--partition=nope",))
    submit(grid, "--timeout", "60", "--", "true")

    def paused() -> dict[str, Any] | None:
        queue: dict[str, Any] = api(grid, "GET", "/v1/alloc/queues/broken")
        return queue if queue["state"] == "paused" else None

    queue = eventually(paused, 60, 0.5)
    assert queue["failures"] == 3
    assert "paused after 3 failures" in queue["reason"]
    assert "Invalid partition" in queue["reason"]
    assert [a["state"] for a in queue["allocations"]] == ["failed"] * 3
    metrics = httpx.get(f"{grid.url}/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).text
    assert 'gridrun_allocation_failures_total{queue="broken"} 3.0' in metrics
    assert 'gridrun_allocation_queue_paused{queue="broken"} 1.0' in metrics
    assert "Invalid partition" in grid.log("master")
    time.sleep(3)
    assert len(allocations(grid, "broken")) == 3  # paused: no more tries
    ls = grid.cli("alloc", "ls")
    assert "paused" in ls.stdout
    assert "broken" in ls.stdout
    resumed = grid.cli_json("alloc", "resume", "broken")
    assert resumed["state"] == "active"
    assert resumed["failures"] == 0


def lagging_squeue(grid: SystemGrid, root: Path) -> None:
    """The master's squeue says CONFIGURING of a running job, as Slurm does until it has
    seen the job's node ready (for seconds on a loaded host, minutes while a cloud node
    boots): the batch script runs meanwhile, and its workers join."""
    real = shutil.which("squeue")
    assert real is not None
    bin_dir = root / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "squeue"
    wrapper.write_text(f'#!/bin/sh\n"{real}" "$@" | sed "s/|RUNNING|/|CONFIGURING|/"\n')
    wrapper.chmod(0o755)
    grid.env["PATH"] = f"{bin_dir}:{grid.env['PATH']}"


def test_a_restarted_master_keeps_its_queues_and_adopts_running_allocations(
    grid: SystemGrid, slurm: Slurm, tmp_path: Path
) -> None:
    lagging_squeue(grid, tmp_path)
    start(grid)
    add_queue(grid, "keep", "--slots", "1", "--idle-timeout", "10m")
    first = submit(grid, "--timeout", "60", "--", "true")
    assert eventually(lambda: task_of(grid, first)["state"] == "succeeded", 90, 0.5)

    # its worker joined: it runs, though squeue still says CONFIGURING
    def runs() -> dict[str, Any]:
        [allocation] = allocations(grid, "keep")
        assert allocation["state"] == "running", (allocation, grid.log("master"))
        return allocation

    allocation = eventually(runs, 10, 0.5)
    assert slurm.jobs()[allocation["backend_id"]] == "RUNNING"
    worker = task_of(grid, first)["worker_id"]
    grid.kill_master()
    start(grid)  # the same database
    assert [q["name"] for q in api(grid, "GET", "/v1/alloc/queues")["queues"]] == ["keep"]
    # the worker comes back with its allocation's credential (not the join token)
    eventually(lambda: alloc_workers(grid).get(worker) == "online", 60, 0.5)
    second = submit(grid, "--timeout", "60", "--", "true")
    assert eventually(lambda: task_of(grid, second)["state"] == "succeeded", 60, 0.5)
    assert task_of(grid, second)["worker_id"] == worker
    [again] = allocations(grid, "keep")  # adopted: no new one
    assert again["id"] == allocation["id"]
    assert again["state"] == "running", (again, grid.log("master"))
    assert again["workers_online"] == 1
    # removing the queue cancels what it started
    removed = grid.cli("alloc", "rm", "keep")
    assert removed.returncode == 0, removed.stderr
    eventually(lambda: slurm.jobs().get(again["backend_id"]) == "CANCELLED", 30, 0.5)
    eventually(lambda: alloc_workers(grid).get(worker) == "offline", 30, 0.5)
    assert json.loads(grid.cli("alloc", "ls", "--json").stdout) == []


def test_an_allocations_credential_joins_its_own_workers_only(
    grid: SystemGrid, slurm: Slurm
) -> None:
    """A task on an allocation's worker does not see the credential (the worker's
    environment is not the task's), nor the master's settings (sbatch is run without them)."""
    start(grid)
    add_queue(grid, "cred", "--slots", "1", "--idle-timeout", "10m")
    task = submit(grid, "--timeout", "60", "--", "env")
    assert eventually(lambda: task_of(grid, task)["state"] == "succeeded", 90, 0.5)
    output = grid.cli("logs", task).stdout
    assert "GRIDRUN_JOIN_TOKEN" not in output
    assert "GRIDRUN_TOKENS" not in output


def test_a_worker_near_its_time_limit_takes_no_task_that_would_not_fit(
    grid: SystemGrid, slurm: Slurm
) -> None:
    """A walltime of one minute: its worker leaves at 50 s (--time-limit, less the margin).
    Near then, a task whose timeout would outlast it is not sent to it; once it has left,
    another allocation's worker runs the task."""
    start(grid)
    result = grid.cli("alloc", "add", "slurm", "--name", "brief", "--time-limit", "60s",
                      "--slots", "1", "--idle-timeout", "10m", "--")  # fmt: skip
    assert result.returncode == 0, result.stderr
    first = submit(grid, "--timeout", "5", "--", "true")
    assert eventually(lambda: task_of(grid, first)["state"] == "succeeded", 90, 0.5)
    [allocation] = allocations(grid, "brief")
    worker = task_of(grid, first)["worker_id"]
    started = allocation["started_at"] or allocation["created_at"]
    # 40 s into its 50: a task of 20 s would not fit, one of 2 s would
    eventually(lambda: time.time() * 1000 - started > 40_000, 60, 0.5)
    late = submit(grid, "--timeout", "20", "--", "true")
    fits = submit(grid, "--timeout", "2", "--", "true")
    assert eventually(lambda: task_of(grid, fits)["state"] == "succeeded", 10, 0.2)
    assert task_of(grid, fits)["worker_id"] == worker
    assert task_of(grid, late)["state"] == "queued"
    # the worker leaves at its limit (before Slurm's walltime), and a new one takes it
    done = eventually(lambda: (t := task_of(grid, late))["state"] == "succeeded" and t, 120, 0.5)
    assert done["worker_id"] != worker

    def left() -> dict[str, Any] | None:  # (the new worker may have come before it left)
        mine = next(a for a in allocations(grid, "brief") if a["id"] == allocation["id"])
        return mine if mine["state"] not in ("queued", "running") else None

    ended = eventually(left, 60, 0.5)
    assert ended["state"] == "ended", ended
    assert slurm.jobs()[ended["backend_id"]] == "COMPLETED"  # it left: not killed at walltime
