"""`gridrun run --all`: one command on every matching live worker, outputs by worker name, and
an exit-code summary (exit 1 if any worker's run did not succeed)."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import eventually
from tests.system.conftest import SystemGrid
from tests.system.terminal import Terminal

pytestmark = [pytest.mark.system]


def test_run_all_prints_each_workers_output_under_its_name(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", labels=("zone=a",))
    system_grid.start_worker("w2", labels=("zone=a",))
    system_grid.start_worker("w3", labels=("zone=b",))
    ok = system_grid.cli(
        "run", "--all", "--on", "zone=a", "--shell", "echo hi from $GRIDRUN_WORKER_ID"
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "w1:\nhi from w1\nw2:\nhi from w2\n"
    assert "2 worker(s): 2 succeeded" in ok.stderr

    mixed = system_grid.cli(
        "run", "--all", "--shell", 'echo "$GRIDRUN_WORKER_ID"; test "$GRIDRUN_WORKER_ID" != w2'
    )
    assert mixed.returncode == 1
    assert mixed.stdout == "w1:\nw1\nw2:\nw2\nw3:\nw3\n"
    assert "3 worker(s): 2 succeeded, 1 did not (w2: failed exit 1)" in mixed.stderr

    nobody = system_grid.cli("run", "--all", "--on", "zone=z", "--", "true")
    assert nobody.returncode == 1
    assert "no live worker matches" in nobody.stderr


def test_ctrl_c_on_run_all_cancels_the_whole_job(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1")
    system_grid.start_worker("w2")
    env = {**system_grid.env, "GRIDRUN_URL": system_grid.url}
    term = Terminal(
        [sys.executable, "-m", "gridrun", "run", "--all", "--", "sleep", "60"],
        env,
        str(system_grid.tmp),
    )
    try:
        text = term.read_until(r"job [0-9a-f]{24}: 2 worker\(s\)")
        job_id = text.split("job ", 1)[1].split(":", 1)[0]
        eventually(
            lambda: system_grid.cli_json("job", "show", job_id)["counts"]["running"] == 2, 20
        )
        term.interrupt()
        term.read_until(rf"cancelled job {job_id}")
    finally:
        code = term.close()
    assert code == 130
    eventually(lambda: system_grid.cli_json("job", "show", job_id)["counts"]["cancelled"] == 2, 30)
