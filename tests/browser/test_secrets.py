"""A task's secret_env reaches its process and nobody else: not another submitter through the
API, not the CLI, not the dashboard, not a log line (debug level), not the audit log, not the
bytes of the database file, not the worker's data dir. Real processes, a real browser."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from gridrun.auth import digest, new_token
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SECRET = "s3cr3t-Vq9LmZx7-only-for-the-process"
SECOND = "another-Kp2Wr8-secret-from-the-cli"


def _all_bytes(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in root.rglob("*") if p.is_file()]


def test_secret_env_reaches_the_process_and_appears_nowhere_else(
    system_grid: SystemGrid, page: Page
) -> None:
    tmp = system_grid.tmp
    admin, other = new_token(), new_token()
    system_grid.start_master(
        "--tokens", f"alice:admin:{digest(admin)},bob:submit:{digest(other)}",
        "--audit-log", str(tmp / "audit.log"),
        "--log-level", "debug",
    )  # fmt: skip
    system_grid.env["GRIDRUN_TOKEN"] = admin
    system_grid.start_worker("w1", slots=1, extra=("--log-level", "debug"))
    secrets_file = tmp / "db.env"
    secrets_file.write_text(f"# the production database\nexport DB_PASSWORD='{SECRET}'\n")
    secrets_file.chmod(0o600)
    # the process checks what it got without printing it: the expected values come as two
    # more secrets, so that they appear in no command line either
    task = json.loads(
        system_grid.cli(
            "submit", "--json", "--secret-env-file", str(secrets_file),
            "--secret-env", f"API_KEY={SECOND}",
            "--secret-env", f"EXPECTED_1={SECRET}", "--secret-env", f"EXPECTED_2={SECOND}",
            "--env", "MODE=plain", "--shell",
            "--", 'test "$DB_PASSWORD" = "$EXPECTED_1" && test "$API_KEY" = "$EXPECTED_2"'
            ' && echo "secrets delivered, ${#DB_PASSWORD} chars"',
        ).stdout
    )  # fmt: skip
    auth = {"Authorization": f"Bearer {admin}"}
    done = httpx.get(
        f"{system_grid.url}/v1/tasks/{task['id']}", params={"wait": 30}, headers=auth, timeout=40
    ).json()
    assert done["state"] == "succeeded", done
    assert sorted(done["secret_env"]) == ["API_KEY", "DB_PASSWORD", "EXPECTED_1", "EXPECTED_2"]
    assert done["env"] == {"MODE": "plain"}

    answers: list[str] = []
    for token in (admin, other):  # its submitter and another submitter
        headers = {"Authorization": f"Bearer {token}"}
        for path in (
            f"/v1/tasks/{task['id']}",
            "/v1/tasks",
            f"/v1/tasks/{task['id']}/output",
            f"/v1/tasks/{task['id']}/output?stream=stdout",
            "/v1/stats",
            "/metrics",
        ):
            response = httpx.get(system_grid.url + path, headers=headers, timeout=10)
            assert response.status_code == 200, (path, response.text)
            answers.append(response.text)
    assert f"secrets delivered, {len(SECRET)} chars" in answers[3]
    cli = [
        system_grid.cli("show", task["id"]),
        system_grid.cli("show", task["id"], "--json"),
        system_grid.cli("ls", "--json"),
        system_grid.cli("logs", task["id"]),
    ]
    assert all(r.returncode == 0 for r in cli), [r.stderr for r in cli]
    assert "DB_PASSWORD" in cli[0].stdout  # shown by name
    answers += [r.stdout + r.stderr for r in cli]

    # the dashboard's task page, as its admin sees it
    page.goto(system_grid.url + "/")
    page.evaluate(f"localStorage.setItem('gridrun.token', '{admin}')")
    page.goto(f"{system_grid.url}/#/tasks/{task['id']}")
    expect(page.locator("main")).to_contain_text("succeeded")
    expect(page.locator("main")).to_contain_text("secrets delivered")
    expect(page.locator("main")).to_contain_text("DB_PASSWORD")  # by name
    answers.append(page.content())

    for text in answers:
        assert SECRET not in text
        assert SECOND not in text
    system_grid.close()  # every log is complete, and the database closed
    for path, data in _all_bytes(tmp / "data") + _all_bytes(tmp / "workers"):
        assert SECRET.encode() not in data, path
        assert SECOND.encode() not in data, path
    for name in ("master.log", "worker-w1.log", "audit.log"):
        text = (tmp / name).read_text()
        assert text, name
        assert SECRET not in text, name
        assert SECOND not in text, name
    assert '"secret_env":["API_KEY","DB_PASSWORD"' in (tmp / "audit.log").read_text()
    key = tmp / "data" / "secret.key"
    assert key.stat().st_mode & 0o777 == 0o600
