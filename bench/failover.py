"""How fast gridrun recovers: master restart -> dispatch resumes; worker SIGKILL -> task lost.

Real processes on free loopback ports, default liveness settings (heartbeat 2 s, liveness
timeout 10 s) unless given. Usage: python bench/failover.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Grid:
    def __init__(self, tmp: Path, liveness: float) -> None:
        self.tmp = tmp
        self.http, self.grpc = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http}"
        self.liveness = liveness
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDRUN_")}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.client = httpx.Client(base_url=self.url, timeout=70)

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gridrun", *args, "--log-level", "warning"],
            cwd=self.tmp, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def master(self) -> subprocess.Popen[bytes]:
        return self.spawn(
            "master", "--db", str(self.tmp / "g.db"), "--http", f"127.0.0.1:{self.http}",
            "--grpc", f"127.0.0.1:{self.grpc}", "--liveness-timeout", str(self.liveness),
        )  # fmt: skip

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        return self.spawn(
            "worker", "--master", f"127.0.0.1:{self.grpc}", "--slots", "2",
            "--data-dir", str(self.tmp / name), "--name", name, "--allow-shell",
        )  # fmt: skip

    def wait_until(self, check, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("timed out")
            time.sleep(0.005)

    def online(self) -> int:
        workers = self.client.get("/v1/workers").json()["workers"]
        return sum(w["state"] == "online" for w in workers)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def restart_to_dispatch(grid: Grid) -> tuple[float, float]:
    """SIGKILL the master with a queue waiting; time the new one to healthy and to a start."""
    master = grid.procs[0]
    grid.client.post("/v1/tasks", json={"tasks": [{"cmd": "sleep 0.05"}] * 400})
    time.sleep(0.5)
    master.send_signal(signal.SIGKILL)
    master.wait()
    grid.procs.remove(master)
    t0 = time.time()
    grid.procs.insert(0, grid.master())
    grid.wait_until(lambda: grid.client.get("/healthz").status_code == 200)
    healthy = time.time() - t0

    def started_since_restart() -> bool:
        tasks = grid.client.get("/v1/tasks", params={"state": "running", "limit": 50}).json()
        return any(
            datetime.fromisoformat(t["started_at"]).timestamp() >= t0 for t in tasks["tasks"]
        )

    grid.wait_until(started_since_restart)
    resumed = time.time() - t0
    grid.client.get("/v1/stats")
    return healthy, resumed


def kill_to_lost(grid: Grid) -> float:
    pid_file = grid.tmp / "victim.pid"
    task = grid.client.post(
        "/v1/tasks",
        json={"cmd": f"echo $$ > {pid_file}; sleep 120", "shell": True, "priority": 100},
    ).json()
    grid.wait_until(lambda: grid.client.get(f"/v1/tasks/{task['id']}").json()["state"] == "running")
    holder = grid.client.get(f"/v1/tasks/{task['id']}").json()["worker_id"]
    proc = next(p for p in grid.procs if holder in p.args)  # type: ignore[operator]
    t0 = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = grid.client.get(f"/v1/tasks/{task['id']}", params={"wait": 60}).json()
    took = time.monotonic() - t0
    os.killpg(int(pid_file.read_text()), signal.SIGKILL)  # the dead worker's orphan
    assert done["state"] == "lost", done
    return took


def one_round(grid: Grid, round_: int) -> tuple[tuple[float, float], float]:
    grid.master()
    grid.wait_until(lambda: grid.client.get("/healthz").status_code == 200)
    grid.worker(f"a{round_}")
    grid.worker(f"b{round_}")
    grid.wait_until(lambda: grid.online() == 2)
    return restart_to_dispatch(grid), kill_to_lost(grid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--liveness", type=float, default=10.0)
    args = parser.parse_args()
    restarts: list[tuple[float, float]] = []
    losses: list[float] = []
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="gridrun-failover-") as tmp:
            grid = Grid(Path(tmp), args.liveness)
            try:
                restart, loss = one_round(grid, round_)
            finally:
                grid.close()
            restarts.append(restart)
            losses.append(loss)
    healthy = [h for h, _ in restarts]
    resumed = [r for _, r in restarts]
    print(f"rounds: {args.rounds}; liveness timeout {args.liveness:g}s, heartbeat 2s")
    print(
        f"master restart -> healthy:          median {statistics.median(healthy):.2f}s"
        f"  (all: {', '.join(f'{x:.2f}' for x in healthy)})"
    )
    print(
        f"master restart -> dispatch resumes: median {statistics.median(resumed):.2f}s"
        f"  (all: {', '.join(f'{x:.2f}' for x in resumed)})"
    )
    print(
        f"worker SIGKILL -> task lost:        median {statistics.median(losses):.2f}s"
        f"  (all: {', '.join(f'{x:.2f}' for x in losses)})"
    )


if __name__ == "__main__":
    main()
