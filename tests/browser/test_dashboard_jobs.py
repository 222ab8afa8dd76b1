"""The dashboard's jobs in a real browser against real `gridrun` processes: the list, a job's
progress, counts and matrix (one cell per task, by index, coloured by state, linking to the
task), and its Cancel and Retry-failed buttons within the viewer's role."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from gridrun.auth import digest, new_token
from tests.browser.test_dashboard import shot
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_job_page_shows_each_task_and_retries_the_failed(
    system_grid: SystemGrid, page: Page
) -> None:
    tmp = system_grid.tmp
    (tmp / "screens").mkdir()
    system_grid.start_master()
    system_grid.start_worker("w1", slots=4)
    fixed = tmp / "fixed"
    script = f"[ $((GRIDRUN_ARRAY_INDEX % 3)) -ne 1 ] || [ -e {fixed} ] || exit 7"
    made = system_grid.cli("submit", "--array", "0-8", "--", "sh", "-c", script)
    job_id = made.stdout.strip()
    assert system_grid.cli("wait", job_id).returncode == 1

    page.goto(system_grid.url + "/")
    page.get_by_role("link", name="Jobs").click()
    row = page.locator(f'#jobs tr[data-id="{job_id}"]')
    expect(row.locator('td[data-count="succeeded"]')).to_have_text("6")
    expect(row.locator('td[data-count="unsuccessful"]')).to_have_text("3")
    row.get_by_role("link", name=job_id).click()
    expect(page).to_have_url(re.compile(rf"#/job/{job_id}$"))
    expect(page.locator("#matrix .cell")).to_have_count(9)
    expect(page.locator("#matrix .cell.failed")).to_have_count(3)
    failed = page.locator("#matrix .cell.failed")
    assert [failed.nth(i).get_attribute("data-index") for i in range(3)] == ["1", "4", "7"]
    expect(page.locator('#job-counts [data-count="failed"]')).to_contain_text("3")
    expect(page.locator('dd[data-field="progress"]')).to_contain_text("9 / 9 (100%)")
    expect(page.locator('#unsuccessful tr[data-index="4"]')).to_contain_text("7")  # exit 7
    shot(page, tmp, "job-failed")

    # a cell links to its task
    page.locator('#matrix .cell[data-index="4"]').click()
    expect(page).to_have_url(re.compile(r"#/task/[0-9a-f]{24}$"))
    expect(page.locator("#job-link")).to_contain_text(f"job {job_id}, index 4")
    page.locator("#job-link a").click()

    # Retry failed: only those run again, and all succeed
    fixed.touch()
    expect(page.locator("#job-retry")).to_be_enabled()
    page.locator("#job-retry").click()
    expect(page.locator("#matrix .cell.succeeded")).to_have_count(9, timeout=30_000)
    tasks = system_grid.cli_json("ls", "--job", job_id)
    assert sorted(t["attempt"] for t in tasks) == [1] * 6 + [2] * 3
    expect(page.locator("#job-retry")).to_be_disabled()
    expect(page.locator("#job-cancel")).to_be_disabled()
    shot(page, tmp, "job-retried")

    # Cancel: what has not ended stops
    sleepy = system_grid.cli("submit", "--array", "1-6%1", "--", "sleep", "60").stdout.strip()
    page.goto(f"{system_grid.url}/#/job/{sleepy}")
    expect(page.locator("#matrix .cell.running")).to_have_count(1)
    page.locator("#job-cancel").click()
    expect(page.locator("#matrix .cell.cancelled")).to_have_count(6, timeout=30_000)
    expect(page.locator('dd[data-field="progress"]')).to_contain_text("6 / 6")


def test_a_read_token_sees_a_job_without_its_buttons(system_grid: SystemGrid, page: Page) -> None:
    admin, viewer = new_token(), new_token()
    system_grid.start_master("--tokens", f"ops:admin:{digest(admin)},viewer:read:{digest(viewer)}")
    system_grid.env["GRIDRUN_TOKEN"] = admin
    job_id = system_grid.cli("submit", "--array", "1-3", "--", "true").stdout.strip()
    page.goto(f"{system_grid.url}/#/job/{job_id}")
    page.once("dialog", lambda dialog: dialog.accept(viewer))
    page.locator("#token-button").click()
    expect(page.locator("#matrix .cell")).to_have_count(3)  # queued: no worker
    expect(page.locator("#matrix .cell.queued")).to_have_count(3)
    expect(page.locator("#job-cancel")).to_be_hidden()
    expect(page.locator("#job-retry")).to_be_hidden()
