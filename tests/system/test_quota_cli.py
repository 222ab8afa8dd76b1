"""`gridrun quota set|show`, `--queue`, `--concurrency` and `ls --owner/--queue` against a real
master: limits set from the CLI apply at once, and a full quota is a clear error."""

from __future__ import annotations

import json

import pytest

from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system]


def test_quotas_from_the_cli(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    assert system_grid.cli("quota", "set", "queue", "nightly", "--max-queued", "2").returncode == 0
    for _ in range(2):
        done = system_grid.cli(
            "submit", "--queue", "nightly", "--concurrency", "etl=1", "--", "true"
        )
        assert done.returncode == 0, done.stderr
    full = system_grid.cli("submit", "--queue", "nightly", "--", "true")
    assert full.returncode == 1
    assert "queue nightly has 2 tasks queued; its quota is 2" in full.stderr
    assert system_grid.cli("submit", "--", "true").returncode == 0  # the default queue is free
    listed = system_grid.cli_json("ls", "--queue", "nightly")
    assert [(t["queue"], t["owner"], t["concurrency_key"]) for t in listed] == [
        ("nightly", "anonymous", "etl")
    ] * 2
    assert len(system_grid.cli_json("ls", "--owner", "anonymous")) == 3
    shown = system_grid.cli_json("quota", "show")
    assert shown["quotas"] == [
        {"scope": "queue", "name": "nightly", "max_queued": 2, "max_running": None}
    ]
    assert {(o["owner"], o["queue"], o["queued"]) for o in shown["owners"]} == {
        ("anonymous", "nightly", 2), ("anonymous", "default", 1),
    }  # fmt: skip
    piped = system_grid.cli("quota", "show").stdout  # into a pipe: TSV, each list under its header
    quotas, owners = piped.strip().split("\n\n")
    assert quotas.split("\n") == ["SCOPE\tNAME\tMAX QUEUED\tMAX RUNNING", "queue\tnightly\t2\t"]
    assert "anonymous\tnightly\t2\t0\t0" in owners.split("\n")
    concurrency = system_grid.cli("concurrency", "ls").stdout.strip().split("\n")
    assert concurrency == ["KEY\tOWNER\tLIMIT", "etl\tanonymous\t1"]
    removed = system_grid.cli("quota", "set", "queue", "nightly")
    assert removed.stdout.strip() == "queue nightly: no quota"
    assert system_grid.cli_json("quota", "show")["quotas"] == []
    # what cannot be said is refused, with the reason
    bad_scope = system_grid.cli("quota", "set", "team", "x", "--max-queued", "1")
    assert bad_scope.returncode == 2
    bad_name = system_grid.cli("quota", "set", "owner", "no spaces", "--max-queued", "1")
    assert bad_name.returncode == 1
    assert "use 1-64 of" in bad_name.stderr
    bad_key = system_grid.cli("submit", "--concurrency", "etl", "--", "true")
    assert bad_key.returncode == 2
    assert "KEY=N" in bad_key.stderr
    bad_queue = system_grid.cli("submit", "--queue", "night ly", "--", "true")
    assert bad_queue.returncode == 1
    assert json.dumps("night ly")[1:-1] in bad_queue.stderr


def test_gc_from_the_cli(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1")
    task_id = system_grid.cli("submit", "--", "true").stdout.strip()
    assert system_grid.task(task_id, wait=30)["state"] == "succeeded"
    dry = system_grid.cli("gc", "--older-than", "0s", "--dry-run")
    assert (dry.returncode, dry.stdout.strip()) == (0, "would delete 1 task(s)")
    assert system_grid.cli("gc", "--older-than", "1d").stdout.strip() == "deleted 0 task(s)"
    done = system_grid.cli_json("gc", "--older-than", "0", "--state", "succeeded")
    assert done == {"deleted": 1, "dry_run": False}
    assert system_grid.cli("show", task_id).returncode == 1  # gone
    bad = system_grid.cli("gc", "--older-than", "a week")
    assert bad.returncode == 1
    assert "give a number and a unit, e.g. 30s, 5m, 12h, 14d" in bad.stderr
    running = system_grid.cli("gc", "--older-than", "0s", "--state", "running")
    assert running.returncode == 1
    assert "only ended tasks can be deleted" in running.stderr


def test_a_task_kept_for_its_own_time_from_the_cli(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    task_id = system_grid.cli("submit", "--retain", "30d", "--", "true").stdout.strip()
    assert system_grid.cli_json("show", task_id)["retain_s"] == 30 * 86400
    bad = system_grid.cli("submit", "--retain", "soon", "--", "true")
    assert bad.returncode == 2
    assert "--retain 'soon': give a number and a unit" in bad.stderr
