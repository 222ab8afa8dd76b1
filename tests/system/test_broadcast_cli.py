"""`gridrun run --all`: one command on every matching live worker, outputs by worker name, and
an exit-code summary (exit 1 if any worker's run did not succeed)."""

from __future__ import annotations

import pytest

from tests.system.conftest import SystemGrid

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
