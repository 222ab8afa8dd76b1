"""The dashboard's allocation queues in a real browser against a real master: an admin sees
each queue with its caps and allocations and pauses and resumes it; another role is told it
may not (the API refuses it too)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from gridrun.auth import digest, new_token
from tests.browser.test_dashboard import shot
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_an_admin_pauses_and_resumes_a_queue_and_a_reader_may_not_see_them(
    system_grid: SystemGrid, page: Page
) -> None:
    (system_grid.tmp / "screens").mkdir()
    admin, viewer = new_token(), new_token()
    system_grid.start_master("--tokens", f"ops:admin:{digest(admin)},viewer:read:{digest(viewer)}")
    system_grid.env["GRIDRUN_TOKEN"] = admin
    added = system_grid.cli(
        "alloc", "add", "slurm", "--name", "cpu", "--time-limit", "1h", "--max-workers", "8",
        "--label", "zone=a", "--no-dry-run", "--", "-p", "batch",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    page.goto(f"{system_grid.url}/#/alloc")
    page.once("dialog", lambda dialog: dialog.accept(admin))
    page.locator("#token-button").click()
    queue = page.locator('section.alloc-queue[data-queue="cpu"]')
    expect(queue).to_contain_text("time limit 1h")
    expect(queue).to_contain_text("max workers 8")
    expect(queue).to_contain_text("zone=a")
    expect(queue.locator(".state")).to_have_text("active")
    expect(queue).to_contain_text("no allocations yet")
    shot(page, system_grid.tmp, "alloc-queues")
    queue.get_by_role("button", name="Pause").click()
    expect(queue.locator(".state")).to_have_text("paused")
    expect(queue.locator('[data-field="reason"]')).to_have_text("paused by a user")
    assert system_grid.cli_json("alloc", "ls")[0]["state"] == "paused"
    queue.get_by_role("button", name="Resume").click()
    expect(queue.locator(".state")).to_have_text("active")

    page.once("dialog", lambda dialog: dialog.accept(viewer))
    page.locator("#token-button").click()
    expect(page.locator("#alloc-denied")).to_contain_text("role read")
    expect(page.locator("section.alloc-queue")).to_have_count(0)
