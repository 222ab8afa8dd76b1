"""`gridrun logs -f` and `gridrun run` print output as it comes, with real processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import eventually
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]


def gridrun_process(grid: SystemGrid, *args: str) -> subprocess.Popen[str]:
    """A CLI command whose output the test reads as it comes."""
    return subprocess.Popen(
        [sys.executable, "-m", "gridrun", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**grid.env, "GRIDRUN_URL": grid.url},
    )


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_logs_follow_prints_lines_while_the_task_runs(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1")
    gate = system_grid.tmp / "gate"
    script = f"echo one; echo warn >&2; while [ ! -e {gate} ]; do sleep 0.05; done; echo two"
    task_id = system_grid.cli("submit", "--shell", script).stdout.strip()
    follower = gridrun_process(system_grid, "logs", "-f", task_id)
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "one\n"  # before the task can end
        assert system_grid.task(task_id)["state"] == "running"
        gate.touch()
        rest, errors = follower.communicate(timeout=30)
    finally:
        stop(follower)
    assert (follower.returncode, rest, errors) == (0, "two\n", "warn\n")


def test_run_survives_a_master_restart_without_losing_or_repeating_output(
    system_grid: SystemGrid,
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1")
    gate = system_grid.tmp / "gate"
    script = (
        f"echo before; while [ ! -e {gate} ]; do sleep 0.05; done; echo while-away;"
        f" touch {gate}-seen; while [ ! -e {gate}2 ]; do sleep 0.05; done; echo after; exit 5"
    )
    run = gridrun_process(system_grid, "run", "--shell", script)
    try:
        assert run.stdout is not None
        assert run.stdout.readline() == "before\n"
        system_grid.kill_master()  # SIGKILL: the follow stream is cut
        gate.touch()  # output made while no master listens: the worker holds it
        eventually(system_grid.tmp.joinpath("gate-seen").exists, 20)
        system_grid.start_master()
        eventually(lambda: system_grid.log("master").count("worker w1 connected") == 2, 20, 0.1)
        (system_grid.tmp / "gate2").touch()
        rest, errors = run.communicate(timeout=60)
    finally:
        stop(run)
    assert (run.returncode, rest) == (5, "while-away\nafter\n"), errors
