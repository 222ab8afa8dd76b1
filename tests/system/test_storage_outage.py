"""The store cannot serve: a full disk under SQLite (a small tmpfs the test mounts) and a
PostgreSQL database that refuses connections. Every route answers 4xx or 503/507 with a message
and Retry-After, never 500; /healthz says not ready while it lasts; workers back off instead of
reconnecting in a loop; nothing stored is lost; everything resumes when the store is back."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests import pg
from tests.helpers import eventually
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.slow]


@contextlib.contextmanager
def tmpfs(tmp_path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of this size, unmounted afterwards (whatever happened)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs."""
    with tmpfs(tmp_path, "4m") as mount:
        yield mount


@pytest.fixture
def disk_64m(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path, "64m") as mount:
        yield mount


def fill(directory: Path) -> Path:
    """Write a file until the disk has no room left; return it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = 65536
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2
    finally:
        os.close(fd)
    return filler


def _connections(log: str) -> int:
    return log.count("connected to master")


def test_a_full_disk_is_507_not_ready_and_everything_resumes(
    system_grid: SystemGrid, small_disk: Path
) -> None:
    system_grid.db = str(small_disk / "gridrun.db")
    system_grid.start_master()
    system_grid.start_worker("w1", slots=2)
    url = system_grid.url
    before = [system_grid.cli("submit", "--", "echo", f"kept-{i}").stdout.strip() for i in range(3)]
    for task_id in before:
        assert system_grid.task(task_id, wait=20)["state"] == "succeeded"
    # a task that is running while the disk fills, and ends during the outage
    during = system_grid.cli("submit", "--shell", "--", "sleep 2; echo finished-meanwhile")
    running = during.stdout.strip()
    eventually(lambda: system_grid.task(running)["state"] == "running", 10)

    filler = fill(small_disk)
    for body in ({"cmd": "echo lost?"}, {"tasks": [{"cmd": "true"}] * 50}):
        response = httpx.post(f"{url}/v1/tasks", json=body, timeout=10)
        assert response.status_code == 507, response.text
        assert "full" in response.json()["detail"]
        assert response.headers["retry-after"].isdigit()
    response = httpx.post(f"{url}/tasks", json={"cmd": "touch test.txt"}, timeout=10)
    assert response.status_code == 507, response.text
    health = httpx.get(f"{url}/healthz", timeout=10)
    assert health.status_code == 503, health.text
    assert "full" in health.json()["detail"]
    # reads still work, and what was stored is all there
    listing = httpx.get(f"{url}/v1/tasks", timeout=10).json()["tasks"]
    assert {t["id"] for t in listing} == {*before, running}
    # the running task ends now: its result cannot be stored, and the worker waits (backs off)
    # instead of reconnecting in a loop
    worker_log = system_grid.tmp / "worker-w1.log"
    eventually(lambda: "UNAVAILABLE" in worker_log.read_text(), 15, 0.1)
    start = _connections(worker_log.read_text())
    with contextlib.suppress(AssertionError):
        eventually(lambda: False, 6, 0.5)  # watch the worker for six seconds
    reconnects = _connections(worker_log.read_text()) - start
    assert reconnects <= 12, f"{reconnects} reconnects in 6 s"
    assert system_grid.master is not None
    assert system_grid.master.poll() is None  # the master stayed up
    assert "Traceback" not in (system_grid.tmp / "master.log").read_text()

    filler.unlink()  # room again
    eventually(lambda: httpx.get(f"{url}/healthz", timeout=5).status_code == 200, 20, 0.2)
    assert system_grid.task(running, wait=30)["state"] == "succeeded"
    out = httpx.get(f"{url}/v1/tasks/{running}/output", timeout=10).json()
    assert out["stdout"]["text"] == "finished-meanwhile\n"
    after = httpx.post(f"{url}/v1/tasks", json={"cmd": "echo back"}, timeout=10)
    assert after.status_code == 201, after.text
    assert system_grid.task(after.json()["id"], wait=20)["state"] == "succeeded"
    for task_id in before:
        assert system_grid.task(task_id)["state"] == "succeeded"


def test_a_full_disk_refuses_an_input_with_507_on_the_master_and_fails_staging_on_a_worker(
    system_grid: SystemGrid, small_disk: Path, tmp_path: Path
) -> None:
    """Files on a full disk: the master answers an upload 507 (nothing kept as an input); a
    worker whose disk cannot take a task's input ends the attempt unstarted, saying so."""
    system_grid.db = str(small_disk / "master" / "gridrun.db")
    (small_disk / "master").mkdir()
    system_grid.start_master()
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 << 20))  # more than the 4 MiB disk holds
    refused = system_grid.cli("submit", "--input", str(big), "--", "true")
    assert refused.returncode == 1
    assert "full" in refused.stderr
    assert system_grid.cli_json("ls") == []  # nothing queued
    eventually(lambda: httpx.get(f"{system_grid.url}/healthz", timeout=5).status_code == 200, 30)
    # a worker on a small disk of its own, a master with room
    system_grid.kill_master()
    system_grid.db = str(tmp_path / "roomy" / "gridrun.db")
    system_grid.start_master()
    (tmp_path / "w").mkdir()
    with tmpfs(tmp_path / "w", "2m") as worker_disk:
        system_grid.start_worker("w1", extra=("--data-dir", str(worker_disk / "data")))
        made = system_grid.cli("submit", "--input", str(big), "--wait", "--", "true")
        assert made.returncode == 1
        task = system_grid.task(made.stdout.strip())
        assert task["state"] == "failed", task
        assert "the worker's disk is full" in task["error"]
        assert task["started_at"] is None  # nothing ran


def test_a_full_disk_on_the_master_drops_a_collected_file_saying_so_and_the_task_ends_true(
    system_grid: SystemGrid, small_disk: Path
) -> None:
    """A collected file the master's disk cannot take is dropped with the reason at once
    (not sent again and again while the task stays unreported), its bytes removed; the
    task ends with what its process did, its error naming the file."""
    system_grid.db = str(small_disk / "master" / "gridrun.db")
    (small_disk / "master").mkdir()
    system_grid.start_master()
    system_grid.start_worker("w1")
    made = system_grid.cli(
        "submit", "--collect", "*.bin", "--timeout", "60", "--",
        "sh", "-c", "head -c 3000000 /dev/urandom > out.bin",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    task = system_grid.task(made.stdout.strip(), wait=40)
    assert task["state"] == "succeeded", task
    assert task["error"].startswith("files not collected: out.bin: "), task
    assert "the master's disk is full" in task["error"]
    [listed] = system_grid.cli_json("files", task["id"])
    assert listed["state"] == "dropped", listed
    assert listed["reason"].startswith("not kept: the master's disk is full"), listed
    assert listed["size"] == 3_000_000
    storage = httpx.get(f"{system_grid.url}/v1/storage", timeout=5).json()
    assert storage["file_bytes"] == 0
    assert httpx.get(f"{system_grid.url}/healthz", timeout=5).status_code == 200


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(pg.server(), timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.mark.pg
def test_a_database_refusing_connections_is_503_on_every_route(system_grid: SystemGrid) -> None:
    name = asyncio.run(pg.create())
    try:
        system_grid.db = pg.url_of(name)
        system_grid.start_master()
        url = system_grid.url
        kept = httpx.post(f"{url}/v1/tasks", json={"cmd": "echo kept"}, timeout=10).json()["id"]
        asyncio.run(_admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        asyncio.run(
            _admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
        )
        routes = [
            ("POST", "/v1/tasks", {"cmd": "true"}),
            ("POST", "/tasks", {"cmd": "touch test.txt"}),
            ("POST", "/v1/jobs", {"cmd": "true"}),
            ("POST", "/v1/schedules", {"cron": "* * * * *", "cmd": "true"}),
            ("GET", "/v1/tasks", None),
            ("GET", f"/v1/tasks/{kept}", None),
            ("GET", f"/v1/tasks/{kept}/output", None),
            ("GET", f"/v1/tasks/{kept}/output/segments", None),
            ("POST", f"/v1/tasks/{kept}/cancel", None),
            ("GET", "/v1/jobs/j1", None),
            ("GET", "/v1/jobs", None),
            ("GET", "/v1/jobs/j1/cells", None),
            ("POST", "/v1/jobs/j1/cancel", None),
            ("POST", "/v1/jobs/j1/retry", None),
            ("POST", "/v1/arrays", {"task": {"cmd": "true"}, "array": "1-3"}),
            ("POST", "/v1/tasks/cancel", {"queue": "nightly"}),
            ("GET", f"/v1/tasks/{kept[-8:]}", None),  # (a short id: its lookup fails too)
            ("GET", "/v1/schedules", None),
            ("GET", "/v1/schedules/s1", None),
            ("DELETE", "/v1/schedules/s1", None),
            ("GET", "/v1/workers", None),
            ("POST", "/v1/workers/w1/drain", None),
            ("GET", "/v1/stats", None),
            ("GET", "/v1/quotas", None),
            ("PUT", "/v1/quotas/owner/o1", {"max_running": 1}),
            ("GET", "/v1/owners", None),
            ("GET", "/v1/concurrency", None),
            ("PUT", "/v1/concurrency/k1", {"limit": 1}),
            ("DELETE", "/v1/concurrency/k1", None),
            ("POST", "/v1/gc", {"older_than_s": 0}),
            ("GET", "/v1/storage", None),
            ("GET", "/v1/history", None),
            ("GET", "/v1/alloc/queues", None),
            ("POST", "/v1/alloc/queues", {"name": "q1", "time_limit": 60, "dry_run": False}),
            ("GET", "/v1/alloc/queues/q1", None),
            ("POST", "/v1/alloc/queues/q1/pause", None),
            ("POST", "/v1/alloc/queues/q1/resume", None),
            ("DELETE", "/v1/alloc/queues/q1", None),
            ("PUT", f"/v1/inputs/{'ab' * 32}", None),
            ("GET", f"/v1/inputs/{'ab' * 32}", None),
            ("GET", f"/v1/tasks/{kept}/files", None),
            ("GET", f"/v1/tasks/{kept}/files/out.csv", None),
            ("GET", "/metrics", None),
            ("GET", "/healthz", None),
        ]
        spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
        # every route that reads or writes the store (/v1/me answers from the token alone,
        # /v1/events is a stream whose every event reads it, /v1/alloc/dry-run asks sbatch)
        unread = ("/v1/events", "/v1/me", "/v1/alloc/dry-run")
        documented = {p for p in spec["paths"] if p not in unread}
        tried = {path.replace(kept, "{task_id}") for _, path, _ in routes}
        tried = {p.replace("/j1", "/{job_id}").replace("/s1", "/{schedule_id}") for p in tried}
        tried = {p.replace("/w1/", "/{worker_id}/") for p in tried}
        tried = {p.replace("/owner/o1", "/{scope}/{name}") for p in tried}
        tried = {p.replace("/concurrency/k1", "/concurrency/{key}") for p in tried}
        tried = {p.replace("/queues/q1", "/queues/{name}") for p in tried}
        tried = {p.replace("ab" * 32, "{sha256}").replace("out.csv", "{path}") for p in tried}
        assert documented <= tried, documented - tried
        for method, path, body in routes:
            response = httpx.request(method, url + path, json=body, timeout=30)
            assert response.status_code == 503, (method, path, response.text)
            assert response.json()["detail"], (method, path)
            if path != "/healthz":
                assert response.headers["retry-after"].isdigit(), (method, path)
        asyncio.run(_admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        eventually(lambda: httpx.get(f"{url}/healthz", timeout=5).status_code == 200, 30, 0.2)
        response = httpx.post(f"{url}/v1/tasks", json={"cmd": "true"}, timeout=10)
        assert response.status_code == 201, response.text
        assert httpx.get(f"{url}/v1/tasks/{kept}", timeout=10).json()["state"] == "queued"
        log = (system_grid.tmp / "master.log").read_text()
        assert "Exception in ASGI application" not in log  # no route failed unexpectedly
        assert " ERROR gridrun" not in log
    finally:
        system_grid.close()
        with contextlib.suppress(Exception):
            asyncio.run(_admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        asyncio.run(pg.drop(name))


def test_fill_really_fills(small_disk: Path) -> None:
    """The helper the test above relies on leaves no room at all."""
    fill(small_disk)
    stat = os.statvfs(small_disk)
    assert stat.f_bavail * stat.f_frsize < 4096


def test_a_nearly_full_disk_is_a_warning_before_it_is_an_outage(
    system_grid: SystemGrid, disk_64m: Path
) -> None:
    small_disk = disk_64m
    system_grid.db = str(small_disk / "gridrun.db")
    system_grid.start_master()
    url = system_grid.url
    assert httpx.get(f"{url}/healthz", timeout=10).json()["warnings"] == []
    disk = os.statvfs(small_disk)
    total, free = disk.f_blocks * disk.f_frsize, disk.f_bavail * disk.f_frsize
    (small_disk / "ballast").write_bytes(b"\0" * (free - int(total * 0.08)))  # 92% full
    health = httpx.get(f"{url}/healthz", timeout=10)
    assert health.status_code == 200  # still serving
    (warning,) = health.json()["warnings"]
    assert re.fullmatch(r"the disk holding the database is 9[0-9]% full", warning), warning
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    ratio = float(re.search(r"^gridrun_db_disk_used_ratio (\S+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
    assert ratio > 0.9
    eventually(lambda: warning in (system_grid.tmp / "master.log").read_text(), 10)
