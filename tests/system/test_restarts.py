"""Real processes killed with SIGKILL: nothing acknowledged is lost, workers come back alone."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.helpers import eventually, free_port, pid_alive
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(180)]


def test_master_sigkill_with_queued_tasks_then_restart_runs_them_all(
    system_grid: SystemGrid, tmp_path: Path
) -> None:
    system_grid.start_master()
    ids_file = tmp_path / "ids"
    body = {"tasks": [{"cmd": f'echo "$GRIDRUN_TASK_ID" >> {ids_file}', "shell": True}] * 100}
    response = httpx.post(f"{system_grid.url}/v1/tasks", json=body, timeout=30)
    assert response.status_code == 201  # acknowledged: it must survive what follows
    ids = [t["id"] for t in response.json()["tasks"]]
    system_grid.kill_master(signal.SIGKILL)
    system_grid.start_master()
    system_grid.start_worker("w1", slots=4)
    for task_id in ids:
        assert system_grid.task(task_id, wait=30)["state"] == "succeeded"
    assert Counter(ids_file.read_text().split()) == Counter(ids)


def test_worker_rides_through_a_master_sigkill_and_delivers_the_real_result(
    system_grid: SystemGrid, tmp_path: Path
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1")
    gate, started = tmp_path / "gate", tmp_path / "started"
    task_id = system_grid.cli(
        "submit", "--shell", f"touch {started}; while [ ! -e {gate} ]; do sleep 0.02; done; exit 5"
    ).stdout.strip()
    eventually(started.exists, 20)
    system_grid.kill_master(signal.SIGKILL)
    gate.touch()  # the task ends while the master is dead
    outbox = system_grid.tmp / "workers" / "w1" / "outbox"
    eventually(lambda: any(outbox.glob("*.result")), 20)  # the worker holds the result
    system_grid.start_master()
    done = system_grid.task(task_id, wait=30)
    assert done["state"] == "failed"
    assert done["exit_code"] == 5
    eventually(lambda: system_grid.worker_state("w1") == "online", 20)
    again = system_grid.cli("run", "--", "echo", "still here")
    assert again.returncode == 0
    assert again.stdout == "still here\n"


def test_gridrun_up_starts_a_grid_and_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    grid = SystemGrid(tmp_path)
    up = subprocess.Popen(
        [*grid.cli("--help").args[:3], "up", "--workers", "2", "--data-dir", str(tmp_path / "d"),
         "--http", f"127.0.0.1:{grid.http_port}", "--grpc", f"127.0.0.1:{grid.grpc_port}"],
        cwd=tmp_path, env=grid.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def two_online() -> bool:
            try:
                workers = httpx.get(f"{grid.url}/v1/workers", timeout=2).json()["workers"]
            except httpx.TransportError:
                return False
            return sum(w["state"] == "online" for w in workers) == 2

        eventually(two_online, 30, 0.1)
        pid_file = tmp_path / "task.pid"
        task_id = grid.cli("submit", "--shell", f"echo $$ > {pid_file}; sleep 60").stdout.strip()
        eventually(lambda: grid.task(task_id)["state"] == "running", 20)
        children = [
            int(p) for p in (Path(f"/proc/{up.pid}/task/{up.pid}/children").read_text().split())
        ]
        assert len(children) == 3  # master + 2 workers
        task_pid = int(pid_file.read_text())
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
        for pid in [*children, task_pid]:
            eventually(lambda pid=pid: not pid_alive(pid), 10)
        assert up.stdout is not None
        banner = up.stdout.read().decode()
        # on a port of its own, the banner's example says where the grid is
        assert f"try:  GRIDRUN_URL={grid.url} gridrun run -- echo hello" in banner
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def test_worker_sigkill_during_a_task_ends_it_lost_not_rerun(
    system_grid: SystemGrid, tmp_path: Path
) -> None:
    system_grid.start_master()
    worker = system_grid.start_worker("w1")
    pid_file, runs = tmp_path / "pid", tmp_path / "runs"
    task_id = system_grid.cli(
        "submit", "--shell", f"echo run >> {runs}; echo $$ > {pid_file}; sleep 60"
    ).stdout.strip()
    eventually(lambda: pid_file.exists() and pid_file.read_text().strip(), 20)
    task_pid = int(pid_file.read_text())
    try:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        done = system_grid.task(task_id, wait=30)  # liveness timeout is 4 s here
        assert done["state"] == "lost"
        assert "unreachable" in done["error"]
        # a new worker does not run it again (max one attempt by default)
        system_grid.start_worker("w2")
        assert system_grid.cli("run", "--", "true").returncode == 0
        assert runs.read_text().split() == ["run"]
    finally:
        if pid_alive(task_pid):
            os.killpg(task_pid, signal.SIGKILL)  # the orphan of the killed worker


@pytest.mark.pg
def test_gridrun_up_with_two_masters_goes_on_when_one_is_killed(tmp_path: Path) -> None:
    """`gridrun up --masters 2`: two masters on an embedded PostgreSQL, workers knowing both.
    SIGKILL the master a batch was submitted to while it runs: the other carries the grid,
    and every task ends succeeded, each run exactly once (by the tasks' own record)."""
    grid = SystemGrid(tmp_path)
    # `up` gives master i the ports + i: both of each pair must be free (two independent free
    # ports may be neighbours, or the second taken by a connection's ephemeral port)
    grid.http_port = _free_pair()
    while abs((grpc := _free_pair()) - grid.http_port) <= 1:
        pass
    grid.grpc_port = grpc
    grid.url = f"http://127.0.0.1:{grid.http_port}"
    second = f"http://127.0.0.1:{grid.http_port + 1}"
    up = subprocess.Popen(
        [*grid.cli("--help").args[:3], "up", "--masters", "2", "--workers", "2",
         "--data-dir", str(tmp_path / "d"),
         "--http", f"127.0.0.1:{grid.http_port}", "--grpc", f"127.0.0.1:{grid.grpc_port}"],
        cwd=tmp_path, env=grid.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def online(url: str) -> int:
            try:
                workers = httpx.get(f"{url}/v1/workers", timeout=2).json()["workers"]
            except httpx.TransportError:
                return 0
            return sum(w["state"] == "online" for w in workers)

        eventually(lambda: online(grid.url) == 2 and online(second) == 2, 60, 0.2)
        ran = tmp_path / "ran"
        body = {"cmd": f"echo $GRIDRUN_TASK_ID >> {ran}; sleep 0.3", "shell": True}
        tasks = httpx.post(f"{grid.url}/v1/tasks", json={"tasks": [body] * 30}, timeout=30).json()[
            "tasks"
        ]
        eventually(lambda: ran.exists() and len(ran.read_text().split()) >= 4, 30)
        children = [
            int(p) for p in Path(f"/proc/{up.pid}/task/{up.pid}/children").read_text().split()
        ]
        (first_master,) = [
            pid for pid in children
            if (args := Path(f"/proc/{pid}/cmdline").read_text().split("\x00"))[3] == "master"
            and f"127.0.0.1:{grid.http_port}" in args
        ]  # fmt: skip
        os.kill(first_master, signal.SIGKILL)
        for t in tasks:
            done = httpx.get(f"{second}/v1/tasks/{t['id']}", params={"wait": 60}, timeout=70).json()
            assert done["state"] == "succeeded", done
        runs = ran.read_text().split()
        assert sorted(runs) == sorted(t["id"] for t in tasks)  # each exactly once
        assert up.poll() is None  # the grid went on
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=90) == 0
        assert up.stdout is not None
        said = up.stdout.read().decode(errors="replace")
        assert "Warning" not in said, said  # (platformdirs' RuntimeDirWarning leaked once)
        for pid in children:
            eventually(lambda pid=pid: not pid_alive(pid), 20)
        postmaster = tmp_path / "d" / "postgres" / "postmaster.pid"
        eventually(lambda: not postmaster.exists(), 20)  # up stopped its PostgreSQL too
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        _stop_postgres(tmp_path / "d" / "postgres")


def _stop_postgres(data: Path) -> None:
    """A test that failed before `up` stopped its PostgreSQL stops it (fast shutdown)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        os.kill(int((data / "postmaster.pid").read_text().split()[0]), signal.SIGINT)


def _free_pair() -> int:
    """A port p such that p and p + 1 are both free now."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
