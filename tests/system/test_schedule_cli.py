"""`gridrun schedule add|ls|rm` against a real master."""

from __future__ import annotations

import json

import pytest

from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system]


def test_schedule_add_ls_rm(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    added = system_grid.cli(
        "schedule", "add", "--cron", "0 2 * * *", "--name", "nightly", "--on", "zone=a",
        "--", "./nightly.sh", "--full",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    schedule_id = added.stdout.strip()
    listed = json.loads(system_grid.cli("schedule", "ls", "--json").stdout)
    assert [(s["id"], s["cron"], s["argv"], s["on"]) for s in listed] == [
        (schedule_id, "0 2 * * *", ["./nightly.sh", "--full"], "zone=a")
    ]
    table = system_grid.cli("schedule", "ls")
    assert "nightly" in table.stdout
    assert "0 2 * * *" in table.stdout
    bad = system_grid.cli("schedule", "add", "--cron", "0 25 * * *", "--", "true")
    assert bad.returncode == 1
    assert "not a valid cron expression" in bad.stderr
    removed = system_grid.cli("schedule", "rm", schedule_id)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(system_grid.cli("schedule", "ls", "--json").stdout) == []
    missing = system_grid.cli("schedule", "rm", schedule_id)
    assert missing.returncode == 1
    assert "no schedule" in missing.stderr
