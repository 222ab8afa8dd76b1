"""Backups of a live grid: `gridrun backup` copies the SQLite database while 1,000 tasks run,
`gridrun restore` refuses while a master uses the file and puts the copy in place once it is
stopped, and a master on the restored file shows every task. A second master on one SQLite
file is refused. PostgreSQL: pg_dump and pg_restore give a working grid."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess

import httpx
import pytest

from tests import pg
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.slow]


def all_ids(url: str) -> set[str]:
    ids: set[str] = set()
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{url}/v1/tasks", params=params, timeout=30).json()
        ids |= {t["id"] for t in page["tasks"]}
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


def test_a_backup_of_a_busy_grid_restores_every_task(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=4)
    body = {"tasks": [{"cmd": "sleep 0.05", "shell": True}] * 1000}
    submitted = httpx.post(f"{system_grid.url}/v1/tasks", json=body, timeout=60).json()["tasks"]
    ids = {t["id"] for t in submitted}
    copy = system_grid.tmp / "grid.backup"
    made = system_grid.cli("backup", str(copy), "--db", system_grid.db)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"backed up {system_grid.db} to {copy}")
    assert copy.stat().st_mode & 0o777 == 0o600  # every task's spec and output: not for others
    states = httpx.get(f"{system_grid.url}/v1/stats", timeout=10).json()["tasks"]
    assert states["queued"] > 0  # it was copied mid-run
    again = system_grid.cli("backup", str(copy), "--db", system_grid.db)
    assert again.returncode == 1
    assert "exists: give a new file" in again.stderr
    refused = system_grid.cli("restore", str(copy), "--db", system_grid.db)
    assert refused.returncode == 1
    assert "in use by a running master" in refused.stderr
    second = system_grid.cli("master", "--db", system_grid.db, "--http", "127.0.0.1:0",
                             "--grpc", "127.0.0.1:0", timeout=30)  # fmt: skip
    assert second.returncode != 0
    assert "in use by a running master" in second.stdout + second.stderr

    for worker in system_grid.workers.values():
        worker.send_signal(signal.SIGKILL)
    system_grid.kill_master(signal.SIGTERM)
    restored_db = system_grid.tmp / "restored" / "gridrun.db"
    done = system_grid.cli("restore", str(copy), "--db", str(restored_db))
    assert done.returncode == 0, done.stderr
    system_grid.db = str(restored_db)
    system_grid.start_master()
    assert all_ids(system_grid.url) == ids  # every task, as it was when copied


@pytest.mark.pg
def test_a_postgresql_dump_restores_into_a_working_grid(system_grid: SystemGrid) -> None:
    pg_dump, pg_restore = pg.client_tool("pg_dump"), pg.client_tool("pg_restore")
    if pg_dump is None or pg_restore is None:  # (the pgserver wheel's always can)
        pytest.skip("no pg_dump and pg_restore of the test server's version or newer here")
    source, target = asyncio.run(pg.create()), asyncio.run(pg.create())
    try:
        system_grid.db = pg.url_of(source)
        system_grid.start_master()
        body = {"tasks": [{"cmd": "true"}] * 50}
        ids = {t["id"] for t in httpx.post(f"{system_grid.url}/v1/tasks", json=body,
                                           timeout=30).json()["tasks"]}  # fmt: skip
        # a task's input and collected file (chunks in their own tables) go with the dump
        data = os.urandom(3 << 20)
        (system_grid.tmp / "in.bin").write_bytes(data)
        system_grid.start_worker("w0")
        made = system_grid.cli(
            "submit", "--input", str(system_grid.tmp / "in.bin"), "--collect", "out.bin",
            "--wait", "--", "sh", "-c", "cp in.bin out.bin",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        with_files = made.stdout.strip()
        ids.add(with_files)
        dump = system_grid.tmp / "grid.dump"
        subprocess.run([pg_dump, "-Fc", "-f", str(dump), pg.url_of(source)], check=True)
        system_grid.kill_master(signal.SIGTERM)
        subprocess.run([pg_restore, "--no-owner", "-d", pg.url_of(target), str(dump)],
                       check=True)  # fmt: skip
        system_grid.db = pg.url_of(target)
        system_grid.start_master()
        assert all_ids(system_grid.url) == ids
        back = system_grid.tmp / "back.bin"
        copied = system_grid.cli("cp", f"{with_files}:out.bin", str(back))
        assert copied.returncode == 0, copied.stderr
        assert back.read_bytes() == data
        system_grid.start_worker("w1")
        task = httpx.post(f"{system_grid.url}/v1/tasks", json={"cmd": "true"}, timeout=10).json()
        assert system_grid.task(task["id"], wait=30)["state"] == "succeeded"
        # the restored input is held: a task names it again without sending it, and reads it
        digest = hashlib.sha256(data).hexdigest()
        held = httpx.get(f"{system_grid.url}/v1/inputs/{digest}", timeout=10)
        assert held.json()["size"] == len(data)
        again = system_grid.cli(
            "submit", "--input", str(system_grid.tmp / "in.bin"), "--wait", "--",
            "sh", "-c", "sha256sum in.bin",
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        out = httpx.get(f"{system_grid.url}/v1/tasks/{again.stdout.strip()}/output", timeout=10)
        assert out.json()["stdout"]["text"].startswith(digest)
    finally:
        system_grid.kill_master(signal.SIGTERM)
        asyncio.run(pg.drop(source))
        asyncio.run(pg.drop(target))
