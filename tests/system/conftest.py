"""Real `gridrun` processes on free loopback ports, each with its own log file; every process
is killed at the end of the test, whatever happened."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridrun.worker.proctree import descendants
from tests.helpers import env_without_gridrun, eventually, free_port


class SystemGrid:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.master: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = env_without_gridrun()
        self.db = str(tmp / "data" / "gridrun.db")  # or a postgresql:// URL

    def _spawn(
        self,
        name: str,
        args: list[str],
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 (owned by the process)
        proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "gridrun", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd or self.tmp,
            env={**self.env, **(env or {})},
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def start_master(self, *extra: str) -> subprocess.Popen[bytes]:
        self.master = self._spawn(
            "master",
            [
                "master",
                "--db", self.db,
                "--http", f"127.0.0.1:{self.http_port}",
                "--grpc", f"127.0.0.1:{self.grpc_port}",
                "--heartbeat-interval", "0.5",
                "--liveness-timeout", "4",
                "--kill-grace", "1",
                *extra,
            ],
        )  # fmt: skip
        eventually(self.healthy, 20, 0.05)
        return self.master

    def healthy(self) -> bool:
        assert self.master is not None
        assert self.master.poll() is None, self.log("master")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill_master(self, sig: int = signal.SIGKILL) -> None:
        assert self.master is not None
        self.master.send_signal(sig)
        self.master.wait(timeout=30)

    def start_worker(
        self,
        name: str,
        slots: int = 2,
        labels: tuple[str, ...] = (),
        cwd: Path | None = None,
        master: str | None = None,
        extra: tuple[str, ...] = (),
        run_as: str | None = "root" if os.geteuid() == 0 else None,
    ) -> subprocess.Popen[bytes]:
        """A worker; tasks run as root when the tests do (they write into the test's own
        directories), unless `run_as` says otherwise (None: the worker's default)."""
        args = [
            "worker",
            "--master",
            master or f"127.0.0.1:{self.grpc_port}",
            "--slots",
            str(slots),
            "--data-dir",
            str(self.tmp / "workers" / name),
            "--name",
            name,
            "--allow-shell",
        ]
        for label in labels:
            args += ["--label", label]
        if run_as is not None:
            args += ["--run-as", run_as]
        proc = self._spawn(f"worker-{name}", [*args, *extra], cwd)
        self.workers[name] = proc
        eventually(lambda: self.worker_state(name) == "online", 20, 0.05)
        return proc

    def worker_state(self, name: str) -> str | None:
        token = self.env.get("GRIDRUN_TOKEN")  # the CLI's token, when a test sets one
        headers = {"Authorization": f"Bearer {token}"} if token else None
        workers = httpx.get(f"{self.url}/v1/workers", headers=headers, timeout=5).json()
        for worker in workers["workers"]:
            if worker["id"] == name:
                return str(worker["state"])
        return None

    def cli(
        self, *args: str, timeout: float = 60, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The CLI, its stdin `stdin` through a pipe (None: /dev/null, as a terminal-less
        job has)."""
        return subprocess.run(
            [sys.executable, "-m", "gridrun", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, "GRIDRUN_URL": self.url},
            cwd=self.tmp,
            **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}),
        )

    def cli_json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def task(self, task_id: str, wait: float = 0) -> dict[str, Any]:
        params = {"wait": wait} if wait else {}
        response = httpx.get(f"{self.url}/v1/tasks/{task_id}", params=params, timeout=wait + 10)
        task: dict[str, Any] = response.json()
        return task

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def close(self) -> None:
        """Stop every process this grid started and every process those started (a task's
        process group lives on if its worker was SIGKILLed), whatever fails on the way."""
        left = {
            pid
            for proc in self.procs
            if proc.poll() is None
            for pid in descendants(proc.pid)
            if not is_guardian(pid)  # it ends by itself, after removing the worker's cgroups
        }
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid in left:  # tasks still running: their groups go too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def is_spawner(pid: int) -> bool:
    """A worker's spawner (gridrun.worker.spawner), by its command line."""
    try:
        return b"gridrun/worker/spawner.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def is_guardian(pid: int) -> bool:
    """A worker's guardian (gridrun.worker.guardian), by its command line."""
    try:
        return b"gridrun.worker.guardian" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.fixture
def system_grid(tmp_path: Path) -> Iterator[SystemGrid]:
    grid = SystemGrid(tmp_path)
    try:
        yield grid
    finally:
        grid.close()
