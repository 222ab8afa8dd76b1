"""The dashboard in a real browser (Playwright driving Debian's chromium) against real
`gridrun` processes: submit from the form, watch the task appear, follow its output live,
cancel a running one, drain a worker. Screenshots of every page land in the test's tmp dir."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from gridrun.auth import digest, new_token
from tests.helpers import cgroups_usable, eventually
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def shot(page: Page, tmp: Path, name: str) -> None:
    page.screenshot(path=str(tmp / "screens" / f"{name}.png"), full_page=True)
    keep = os.environ.get("DASHBOARD_SCREENSHOTS")  # copy them somewhere to look at
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp / "screens" / f"{name}.png", Path(keep) / f"{name}.png")


def test_the_dashboard_end_to_end(system_grid: SystemGrid, page: Page) -> None:
    tmp = system_grid.tmp
    (tmp / "screens").mkdir()
    system_grid.start_master()
    system_grid.start_worker("w1", slots=2, labels=("zone=b",))
    system_grid.start_worker("w2", slots=1)
    page.goto(system_grid.url + "/")

    # overview: live numbers
    expect(page.locator("#workers-online .n")).to_have_text("2")
    expect(page.locator("#slots .n")).to_have_text("0 / 3")
    expect(page.locator("#live")).to_have_class("live on")
    shot(page, tmp, "1-overview-empty")

    # submit from the form, with a label picked from what the workers offer
    page.get_by_role("link", name="Submit").click()
    gate = tmp / "gate"
    page.locator("input[name=cmd]").fill(
        f"echo start; echo warn >&2; while [ ! -e {gate} ]; do sleep 0.05; done; echo done"
    )
    page.locator("input[name=shell]").check()
    page.get_by_role("button", name="zone=b").click()
    expect(page.locator("input[name=labels]")).to_have_value("zone=b")
    page.locator("input[name=name]").fill("<b>not bold</b>")
    shot(page, tmp, "2-submit-form")
    page.get_by_role("button", name="Submit").click()

    # its page: output arrives while it runs, then the end
    expect(page).to_have_url(re.compile(r"#/task/[0-9a-f]+$"))
    task_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#task-state .state")).to_have_text("running")
    expect(page.locator("#output")).to_contain_text("start")
    expect(page.locator("#output .stderr")).to_have_text("warn\n")
    assert system_grid.task(task_id)["state"] == "running"  # seen live, not after the fact
    expect(page.locator('dd[data-field="worker"]')).to_have_text("w1")  # the label held
    shot(page, tmp, "3-task-running")
    gate.touch()
    expect(page.locator("#task-state .state")).to_have_text("succeeded")
    expect(page.locator("#output")).to_have_text("start\nwarn\ndone\n")
    # the output first, the spec folded under it; each raw stream downloads byte-exact
    expect(page.locator("#spec-fold")).not_to_have_attribute("open", "")
    with page.expect_download() as saved:
        page.locator("#download-stderr").click()
    assert Path(saved.value.path()).read_bytes() == b"warn\n"
    assert saved.value.suggested_filename == f"{task_id}.stderr"
    expect(page.locator("#cancel")).to_be_disabled()
    expect(page.locator("#attempts .state")).to_have_text("succeeded")
    if cgroups_usable():  # its cgroup measured what it used
        expect(page.locator('#attempts td[data-field="cpu"]')).to_have_text(
            re.compile(r"^\d+\.\d\d s$")
        )
        expect(page.locator('#attempts td[data-field="peak memory"]')).to_have_text(
            re.compile(r"^\d+(\.\d)? (B|KiB|MiB)$")
        )
    shot(page, tmp, "4-task-done")

    # the task list shows it, with user text as text
    page.get_by_role("link", name="Tasks").click()
    row = page.locator(f'#tasks tr[data-id="{task_id}"]')
    expect(row).to_contain_text("<b>not bold</b>")
    expect(row.locator(".state")).to_have_text("succeeded")
    assert page.locator("#tasks b").count() == 0  # nothing was injected as markup
    page.locator("select[name=state]").select_option("succeeded")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"#/tasks\?state=succeeded$"))
    expect(page.locator("#tasks tr[data-id]")).to_have_count(1)
    shot(page, tmp, "5-tasks")

    # cancel a running one from its page
    long_id = system_grid.cli("submit", "--name", "long", "--", "sleep", "600").stdout.strip()
    page.goto(f"{system_grid.url}/#/task/{long_id}")
    expect(page.locator("#task-state .state")).to_have_text("running")
    page.locator("#cancel").click()
    expect(page.locator("#task-state .state")).to_have_text("cancelled")
    assert system_grid.task(long_id)["state"] == "cancelled"
    shot(page, tmp, "6-task-cancelled")

    # drain a worker
    page.get_by_role("link", name="Workers").click()
    w2 = page.locator('#workers tr[data-id="w2"]')
    expect(w2.locator(".state")).to_have_text("online")
    expect(w2.locator(".resources")).to_contain_text(f"{os.cpu_count()} CPU")
    mode = "cgroup" if cgroups_usable() else "subreaper"
    expect(w2.locator(".containment")).to_contain_text(mode)
    shot(page, tmp, "7-workers")
    w2.get_by_role("button", name="Drain").click()
    expect(w2.locator(".state")).to_have_text(re.compile(r"^(draining|offline)$"))
    system_grid.workers["w2"].wait(timeout=30)  # it finished (nothing to do) and exited
    expect(w2.locator(".state")).to_have_text("offline")
    shot(page, tmp, "8-worker-drained")

    # overview again: the counts and the charts moved (a cancelled task is not a failure)
    page.get_by_role("link", name="Overview").click()
    expect(page.locator('#states td[data-count="succeeded"]')).to_have_text("1")
    expect(page.locator('#states td[data-count="cancelled"]')).to_have_text("1")
    expect(page.locator("#workers-offline .n")).to_have_text("1")
    expect(page.locator("#chart-finished")).to_have_attribute("data-sum", "2,0")
    shot(page, tmp, "9-overview-after")


def test_with_tokens_the_dashboard_asks_for_one_and_uses_it(
    system_grid: SystemGrid, page: Page
) -> None:
    token = new_token()
    system_grid.start_master("--tokens", f"viewer:read:{digest(token)}")
    page.goto(system_grid.url + "/#/workers")
    expect(page.locator("#notice")).to_contain_text("requires a token")
    page.once("dialog", lambda dialog: dialog.accept(token))
    page.locator("#token-button").click()
    expect(page.locator("#workers")).to_contain_text("no workers yet")
    expect(page.locator("#notice")).to_be_hidden()
    # a read token cannot submit: the form says so
    page.get_by_role("link", name="Submit").click()
    expect(page.locator("#submit-denied")).to_have_text(
        "this token (viewer, role read) may not submit"
    )
    expect(page.get_by_role("button", name="Submit")).to_be_disabled()


def test_the_task_page_shows_placement_dependencies_and_why_it_waits(
    system_grid: SystemGrid, page: Page
) -> None:
    import httpx

    system_grid.start_master()
    system_grid.start_worker("w1", slots=1, labels=("zone=a",))
    first = httpx.post(
        f"{system_grid.url}/v1/tasks",
        json={"cmd": "true", "on": "zone in (a,b), !spot", "gpus": 2, "memory_mb": 512},
        timeout=10,
    ).json()
    second = httpx.post(
        f"{system_grid.url}/v1/tasks", json={"cmd": "true", "after": [first["id"]]}, timeout=10
    ).json()
    eventually(lambda: system_grid.task(first["id"])["unschedulable"], 10)
    page.goto(f"{system_grid.url}/#/task/{first['id']}")
    expect(page.locator('dd[data-field="on"]')).to_have_text("zone in (a,b), !spot")
    expect(page.locator('dd[data-field="needs"]')).to_have_text("512 MiB, 2 GPU")
    expect(page.locator('dd[data-field="unschedulable"]')).to_contain_text("lacks 2 GPUs")
    page.goto(f"{system_grid.url}/#/task/{second['id']}")
    expect(page.locator("#task-state .state")).to_have_text("waiting")
    expect(page.locator('dd[data-field="after"]')).to_have_text(first["id"])


def test_owners_and_queues_on_the_overview_and_as_filters(
    system_grid: SystemGrid, page: Page
) -> None:
    """The overview lists tasks queued and running per owner and queue; each links to the
    tasks page filtered by it; a task held by its concurrency key says why."""
    import httpx

    alice, bob = new_token(), new_token()
    system_grid.start_master("--tokens", f"alice:admin:{digest(alice)},bob:submit:{digest(bob)}")
    system_grid.env["GRIDRUN_TOKEN"] = alice
    system_grid.start_worker("w1", slots=2)
    held = {"cmd": "sleep 30", "concurrency_key": "deploy", "concurrency_limit": 1}
    for token, bodies in (
        (alice, [held, held]),
        (bob, [{"cmd": "true", "labels": {"zone": "nowhere"}, "queue": "nightly"}] * 3),
    ):
        response = httpx.post(
            f"{system_grid.url}/v1/tasks",
            json={"tasks": bodies},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
    second = response.json()["tasks"][0]["id"]  # (one of bob's)
    page.goto(system_grid.url + "/")
    page.once("dialog", lambda dialog: dialog.accept(alice))
    page.locator("#token-button").click()
    bobs = page.locator('#owners tr[data-owner="bob"][data-queue="nightly"]')
    expect(bobs.locator('td[data-count="queued"]')).to_have_text("3")
    alices = page.locator('#owners tr[data-owner="alice"][data-queue="default"]')
    expect(alices.locator('td[data-count="running"]')).to_have_text("1")
    expect(alices.locator('td[data-count="queued"]')).to_have_text("1")
    bobs.get_by_role("link", name="nightly").click()
    expect(page).to_have_url(re.compile(r"#/tasks\?queue=nightly$"))
    expect(page.locator("#tasks tr[data-id]")).to_have_count(3)
    expect(page.locator('#tasks td[data-field="owner"]').first).to_have_text("bob")
    page.goto(f"{system_grid.url}/#/task/{second}")
    expect(page.locator('dd[data-field="queue"]')).to_have_text("nightly")
    waiting = httpx.get(
        f"{system_grid.url}/v1/tasks",
        params={"owner": "alice", "state": "queued"},
        headers={"Authorization": f"Bearer {alice}"},
        timeout=10,
    ).json()["tasks"]
    page.goto(f"{system_grid.url}/#/task/{waiting[0]['id']}")
    # a limit's reason: the task waits its turn, it is not unschedulable (as `gridrun show`)
    expect(page.locator('dd[data-field="waiting"]')).to_have_text(
        "waiting for concurrency key deploy (1/1 running)"
    )
    expect(page.locator('dd[data-field="unschedulable"]')).to_have_count(0)
    expect(page.locator('dd[data-field="concurrency"]')).to_have_text("deploy (at most 1 at once)")


def test_the_overview_shows_what_the_database_holds(system_grid: SystemGrid, page: Page) -> None:
    system_grid.start_master("--retain", "7d", "--output-budget", "1GiB")
    system_grid.start_worker("w1")
    task_id = system_grid.cli("submit", "--shell", "--", "printf %0100d 0").stdout.strip()
    system_grid.task(task_id, wait=30)
    page.goto(system_grid.url + "/")
    expect(page.locator("#storage-tasks .n")).to_have_text("1")
    expect(page.locator("#storage-output .n")).to_have_text("100 B")
    expect(page.locator("#storage-output .k")).to_have_text("output kept of 1.0 GiB")
    expect(page.locator("#storage-next .k")).to_have_text("next clean-up (keeps 7 d)")
    expect(page.locator("#storage-disk .n")).to_have_text(re.compile(r"^\d+%$"))
    expect(page.locator("#storage-skipped .n")).to_have_text("0")
