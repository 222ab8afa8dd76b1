"""A task's collected files on its dashboard page in a real browser: listed with size, sha256
and state (a dropped one with why), each complete one downloaded byte-exact with the viewer's
token; a reader may download, an unknown token may not."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from gridrun.auth import digest, new_token
from tests.browser.test_dashboard import shot
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_tasks_files_are_listed_and_downloaded_byte_exact(
    system_grid: SystemGrid, page: Page
) -> None:
    (system_grid.tmp / "screens").mkdir()
    admin, viewer = new_token(), new_token()
    system_grid.start_master("--tokens", f"ops:admin:{digest(admin)},viewer:read:{digest(viewer)}")
    system_grid.env["GRIDRUN_TOKEN"] = admin
    system_grid.env["GRIDRUN_JOIN_TOKEN"] = admin
    system_grid.start_worker("w1")
    data = os.urandom(2_500_000)
    (system_grid.tmp / "in.bin").write_bytes(data)
    made = system_grid.cli(
        "submit", "--shell", "--input", "in.bin", "--collect", "out/*", "--collect", "link",
        "--wait", "--", "mkdir out && cp in.bin out/result.bin && ln -s /etc/hostname link",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    task_id = made.stdout.strip()
    page.goto(f"{system_grid.url}/#/task/{task_id}")
    page.once("dialog", lambda dialog: dialog.accept(viewer))
    page.locator("#token-button").click()
    row = page.locator('#files tr[data-file="out/result.bin"]')
    expect(row).to_contain_text("complete")
    expect(row).to_contain_text(hashlib.sha256(data).hexdigest()[:12])
    expect(page.locator('#files tr[data-file="link"]')).to_contain_text("dropped: a symlink")
    expect(page.locator('#files tr[data-file="link"] button')).to_have_count(0)
    shot(page, system_grid.tmp, "task-files")
    with page.expect_download() as saved:
        row.get_by_role("button", name="download").click()
    assert Path(saved.value.path()).read_bytes() == data
    assert saved.value.suggested_filename == "result.bin"
