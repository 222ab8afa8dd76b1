"""`gridrun up`: a local grid in the foreground — one master and N workers as child processes.

Children run in their own process group so a Ctrl-C reaches only this supervisor, which then
stops them in order: workers first (they stop their tasks and deliver the results), then the
master. Each child also gets SIGTERM from the kernel if the supervisor itself dies, so no
process outlives it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import httpx

from gridrun.cli.render import split_address

PR_SET_PDEATHSIG = 1
READY_TIMEOUT_S = 30.0
DRAIN_GRACE_S = 10.0  # Ctrl-C: running tasks get this long to finish
STOP_TIMEOUT_S = DRAIN_GRACE_S + 20.0


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel for SIGTERM when the parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Grid:
    def __init__(
        self,
        *,
        workers: int,
        slots: int | None,
        data_dir: Path,
        http: str,
        grpc: str,
        log_level: str,
    ) -> None:
        self.workers = workers
        self.slots = slots
        self.data_dir = data_dir
        self.http = http
        self.grpc = grpc
        self.log_level = log_level
        self.master: subprocess.Popen[bytes] | None = None
        self.children: list[subprocess.Popen[bytes]] = []
        self._stop_signal: int | None = None

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "gridrun", *args, "--log-level", self.log_level]
        child = subprocess.Popen(command, start_new_session=True, preexec_fn=_die_with_parent)
        self.children.append(child)
        return child

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_signal = signum

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        try:
            return self._run()
        finally:
            self._stop()

    def _run(self) -> int:
        http_host, http_port = split_address(self.http)
        self.master = self._spawn(
            "master",
            "--db", str(self.data_dir / "gridrun.db"),
            "--http", self.http,
            "--grpc", self.grpc,
        )  # fmt: skip
        url = f"http://{http_host}:{http_port}"
        if not self._wait_ready(url):
            return 1
        grpc_host, grpc_port = split_address(self.grpc)
        target = (
            f"{grpc_host}:{grpc_port}" if ":" not in grpc_host else f"[{grpc_host}]:{grpc_port}"
        )
        for n in range(1, self.workers + 1):
            # a local development grid: its shell tasks are its user's own, so they are allowed
            # and they run as the user who started the grid, as the article's do (its curl
            # creates test.txt in the worker's directory), even when that user is root
            args = ["worker", "--master", target, "--data-dir", str(self.data_dir / f"worker-{n}"),
                    "--drain-grace", str(DRAIN_GRACE_S), "--allow-shell"]  # fmt: skip
            if os.geteuid() == 0:
                args += ["--run-as", "root"]
            if self.slots is not None:
                args += ["--slots", str(self.slots)]
            self._spawn(*args)
        print(
            f"\ngridrun is up: master {url} (gRPC {target}), {self.workers} worker(s).\n"
            f"  dashboard: {url}/   metrics: {url}/metrics\n"
            f"  try:  gridrun run -- echo hello\n"
            f"        curl -X POST -H 'Content-Type: application/json'"
            f' -d \'{{"cmd": "touch test.txt"}}\' {url}/tasks\n'
            f"  Ctrl-C stops the grid.\n",
            file=sys.stderr,
            flush=True,
        )
        while self._stop_signal is None:
            for child in self.children:
                if child.poll() is not None:
                    role = "the master" if child is self.master else "a worker"
                    print(
                        f"gridrun up: {role} (pid {child.pid}) exited with"
                        f" {child.returncode}; stopping the grid",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.2)
        return 0

    def _wait_ready(self, url: str) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert self.master is not None
        while time.monotonic() < deadline and self._stop_signal is None:
            if self.master.poll() is not None:
                print("gridrun up: the master failed to start", file=sys.stderr)
                return False
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        if self._stop_signal is None:
            print(f"gridrun up: the master did not become ready at {url}", file=sys.stderr)
        return False

    def _stop(self) -> None:
        """Workers first, then the master; SIGKILL whatever ignores SIGTERM too long."""
        workers = [c for c in self.children if c is not self.master]
        for group in (workers, [self.master] if self.master else []):
            for child in group:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for child in group:
                try:
                    child.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
