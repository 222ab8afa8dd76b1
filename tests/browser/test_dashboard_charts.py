"""The dashboard's charts, columns, times and narrow layout in a real browser against real
`gridrun` processes. Screenshots at 1280 and 700 px land in the test's tmp dir (and in
$DASHBOARD_SCREENSHOTS when set)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_dashboard import shot
from tests.helpers import eventually
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def series(page: Page, chart: str, what: str) -> list[float]:
    text = page.locator(f"#{chart}").get_attribute(what) or ""
    return [float(v) for v in text.split(",") if v]


def test_the_overview_charts_move_while_tasks_run(system_grid: SystemGrid, page: Page) -> None:
    tmp = system_grid.tmp
    (tmp / "screens").mkdir()
    system_grid.start_master("--history-step", "1")
    system_grid.start_worker("w1", slots=2)
    page.goto(system_grid.url + "/")
    expect(page.locator("#chart-queue canvas")).to_have_count(1)  # uPlot drew it
    expect(page.locator("#chart-running")).to_have_attribute("data-last", "0,2")
    gate = tmp / "gate"
    ids = [
        system_grid.cli(
            "submit", "--shell", "--", f"while [ ! -e {gate} ]; do sleep 0.05; done"
        ).stdout.strip()
        for _ in range(5)
    ]
    failing = system_grid.cli("submit", "--", "false").stdout.strip()
    # while they run: two running of two slots, the rest queued or sent ahead to the worker
    expect(page.locator("#chart-running")).to_have_attribute("data-last", "2,2")
    eventually(lambda: sum(series(page, "chart-queue", "data-last")) == 4, 10)
    points = series(page, "chart-queue", "data-points")[0]
    eventually(lambda: series(page, "chart-queue", "data-points")[0] > points, 10)  # it moves
    shot(page, tmp, "charts-1280-running")
    page.set_viewport_size({"width": 700, "height": 900})
    shot(page, tmp, "charts-700-running")
    page.set_viewport_size({"width": 1280, "height": 900})
    gate.touch()
    for task_id in [*ids, failing]:
        system_grid.task(task_id, wait=30)
    # every end counted once, the failure apart, and each in the distributions
    expect(page.locator("#chart-finished")).to_have_attribute("data-sum", "6,1")
    expect(page.locator("#chart-latency")).to_have_attribute("data-sum", "6")
    expect(page.locator("#chart-duration")).to_have_attribute("data-sum", "6")
    expect(page.locator("#chart-running")).to_have_attribute("data-last", "0,2")
    expect(page.locator("#chart-queue")).to_have_attribute("data-last", "0,0")
    history = httpx.get(f"{system_grid.url}/v1/history", timeout=10).json()
    assert history["step_s"] == 1
    assert max(s["queued"] for s in history["samples"]) >= 1
    assert sum(s["finished"] for s in history["samples"]) == 6
    assert sum(history["duration"]["counts"]) == 6
    shot(page, tmp, "charts-1280-after")
    page.set_viewport_size({"width": 700, "height": 900})
    shot(page, tmp, "charts-700-after")


def test_every_page_is_usable_at_700_px(system_grid: SystemGrid, page: Page) -> None:
    """No page is wider than a 700 px window (tables scroll in their own box), and the
    navigation and the task page's output stay on screen."""
    tmp = system_grid.tmp
    (tmp / "screens").mkdir()
    system_grid.start_master()
    system_grid.start_worker("w1", labels=("zone=a", "disk=ssd", "team=data-platform"))
    long = "echo " + "a-rather-long-argument " * 12
    task_id = system_grid.cli("submit", "--shell", "--name", "wide", "--", long).stdout.strip()
    system_grid.task(task_id, wait=30)
    page.set_viewport_size({"width": 700, "height": 900})
    drawn = {  # what each page shows once it has loaded
        "#/": "#chart-duration canvas",
        "#/tasks": f'#tasks tr[data-id="{task_id}"]',
        "#/workers": '#workers tr[data-id="w1"]',
        "#/jobs": "#jobs td.muted",
        "#/submit": '#known-labels button:text("zone=a")',
        f"#/task/{task_id}": '#attempts .state:text("succeeded")',
    }
    for where, sign in drawn.items():
        page.goto(f"{system_grid.url}/{where}")
        expect(page.locator(sign)).to_have_count(1)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 700, (where, width)  # nothing sticks out: no sideways page scroll
        expect(page.get_by_role("link", name="Workers")).to_be_in_viewport()
        shot(page, tmp, "700-" + (where.strip("#/").split("/")[0] or "overview"))
    expect(page.locator("#output")).to_be_in_viewport()


def test_times_are_utc_by_default_and_local_on_request(
    system_grid: SystemGrid, browser: Browser
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1")
    task_id = system_grid.cli("submit", "--", "true").stdout.strip()
    task = system_grid.task(task_id, wait=30)
    created = datetime.fromisoformat(task["created_at"])
    context = browser.new_context(timezone_id="America/New_York", locale="en-US")
    try:
        page = context.new_page()
        page.goto(f"{system_grid.url}/#/tasks")
        cell = page.locator(f'#tasks tr[data-id="{task_id}"] td.when').first
        expect(cell).to_have_text(created.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"))
        expect(page.locator(f'#tasks tr[data-id="{task_id}"] td[data-field="took"]')).to_have_text(
            re.compile(r"^\d+\.\d\d s$")
        )
        page.locator("#tz-button").click()
        expect(page.locator("#tz-button")).to_have_text("local time")
        local = created.astimezone(ZoneInfo("America/New_York"))
        expect(cell).to_have_text(local.strftime("%Y-%m-%d %H:%M:%S"))
        page.reload()  # the choice is kept
        expect(cell).to_have_text(local.strftime("%Y-%m-%d %H:%M:%S"))
    finally:
        context.close()


def test_the_tasks_list_says_why_a_task_failed_or_waits(
    system_grid: SystemGrid, page: Page
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1")
    stuck = system_grid.cli("submit", "--on", "gpu=yes", "--", "true").stdout.strip()
    slow = system_grid.cli("submit", "--timeout", "0.5", "--", "sleep", "30").stdout.strip()
    system_grid.task(slow, wait=30)
    eventually(lambda: system_grid.task(stuck)["unschedulable"], 10)
    page.goto(f"{system_grid.url}/#/tasks")
    expect(page.locator(f'#tasks tr[data-id="{stuck}"] td[data-field="reason"]')).to_contain_text(
        "gpu=yes"
    )
    slow_row = page.locator(f'#tasks tr[data-id="{slow}"]')
    expect(slow_row.locator(".state")).to_have_text("timed_out")
    expect(slow_row.locator('td[data-field="reason"]')).to_contain_text("timed out")
    expect(slow_row.locator('td[data-field="took"]')).to_have_text(re.compile(r"^0\.\d\d s$"))


def test_the_submit_form_takes_the_options_people_use(system_grid: SystemGrid, page: Page) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", labels=("zone=a",))
    system_grid.start_worker("w2", labels=("zone=b",))
    page.goto(f"{system_grid.url}/#/submit")
    form = page.locator("#submit-form")
    form.locator("input[name=cmd]").fill('echo "$GREETING from $(pwd)"')
    form.locator("input[name=shell]").check()
    form.locator("input[name=env]").fill("GREETING=hello,world")
    form.locator("input[name=cwd]").fill("/tmp")
    form.locator("input[name=on]").fill("zone in (b)")
    form.locator("input[name=priority]").fill("7")
    form.locator("input[name=max_attempts]").fill("3")
    form.locator("input[name=timeout]").fill("30")
    form.locator("input[name=queue]").fill("adhoc")
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"#/task/[0-9a-f]+$"))
    task_id = page.url.rsplit("/", 1)[1]
    task = system_grid.task(task_id, wait=30)
    assert task["state"] == "succeeded"
    assert (task["env"], task["cwd"], task["on"]) == (
        {"GREETING": "hello,world"},
        "/tmp",
        "zone in (b)",
    )
    assert (task["priority"], task["max_attempts"], task["timeout_s"]) == (7, 3, 30)
    assert (task["queue"], task["worker_id"]) == ("adhoc", "w2")
    expect(page.locator("#output")).to_have_text("hello,world from /tmp\n")

    # once on every matching worker: a job, shown as its tasks
    page.goto(f"{system_grid.url}/#/submit")
    form.locator("input[name=cmd]").fill("hostname")
    form.locator("input[name=all]").check()
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"#/tasks\?job=[0-9a-f]+$"))
    expect(page.locator("#tasks tr[data-id]")).to_have_count(2)
    job = page.url.rsplit("=", 1)[1]
    workers = {
        t["worker_id"] for t in httpx.get(f"{system_grid.url}/v1/jobs/{job}").json()["tasks"]
    }
    assert workers == {"w1", "w2"}

    # bad input says what is wrong and submits nothing
    page.goto(f"{system_grid.url}/#/submit")
    form.locator("input[name=cmd]").fill("true")
    form.locator("input[name=env]").fill("NOEQUALS")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#notice")).to_have_text("env NOEQUALS must look like K=V")
    assert len(httpx.get(f"{system_grid.url}/v1/tasks").json()["tasks"]) == 3
