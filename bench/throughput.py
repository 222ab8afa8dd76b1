"""Throughput and latency of a local grid, against the machine's own limit in the same run.

Starts a grid of real processes (fresh data, free ports; 2 workers x 1 slot), then:
  1. N tasks running `true`, submitted in batches through POST /v1/tasks, timed from the first
     submission until all are terminal; and `seq N | xargs -P 2 -n 1 true` on the same machine.
  2. submit->finish latency of one `true` task at a time (M tasks), measured by the client.
The grid is `gridrun up` on SQLite; with --db postgresql://... (a server URL: each run gets a
database of its own, dropped afterwards) the same is measured, in the same run, on SQLite, on
PostgreSQL with one master, and on PostgreSQL with two masters (submissions alternate between
them; each worker knows both). Prints tasks/s, latency, and ratios to xargs and to SQLite.
Usage: python bench/throughput.py [--tasks N] [--latency M] [--db postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx

from gridrun import model

TERMINAL = tuple(str(state) for state in model.TERMINAL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def xargs_rate(n: int, parallel: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        f"seq {n} | xargs -P {parallel} -n 1 true",
        shell=True,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return n / (time.perf_counter() - start)


def gridrun_rate(clients: list[httpx.Client], n: int, batch: int = 1000) -> float:
    """Submit n `true` tasks in batches, alternating between the masters; time until all end."""
    client = clients[0]
    before = client.get("/v1/stats").json()["tasks"]
    done_before = sum(before[s] for s in TERMINAL)
    start = time.perf_counter()
    for i, offset in enumerate(range(0, n, batch)):
        size = min(batch, n - offset)
        body = {"tasks": [{"argv": ["true"]}] * size}
        clients[i % len(clients)].post("/v1/tasks", json=body).raise_for_status()

    def all_done() -> bool:
        counts = client.get("/v1/stats").json()["tasks"]
        return sum(counts[s] for s in TERMINAL) - done_before >= n

    wait_for(all_done, 600, "all tasks to finish")
    elapsed = time.perf_counter() - start
    counts = client.get("/v1/stats").json()["tasks"]
    if counts["succeeded"] - before["succeeded"] != n:
        raise SystemExit(f"not every task succeeded: {counts}")
    return n / elapsed


def latencies(client: httpx.Client, m: int) -> tuple[list[float], list[float]]:
    """One task at a time: (submit->finished as the client saw it, submit->started as the
    master recorded it: created_at to started_at), in milliseconds."""
    finished, started = [], []
    for _ in range(m):
        start = time.perf_counter()
        task = client.post("/v1/tasks", json={"argv": ["true"]}).json()
        done = client.get(f"/v1/tasks/{task['id']}", params={"wait": 30}).json()
        finished.append((time.perf_counter() - start) * 1000)
        assert done["state"] == "succeeded", done
        created = datetime.fromisoformat(done["created_at"])
        began = datetime.fromisoformat(done["started_at"])
        started.append((began - created).total_seconds() * 1000)
    return sorted(finished), sorted(started)


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * q))]


class Grid:
    """Real gridrun processes: `gridrun up` on SQLite, or masters + workers on PostgreSQL."""

    def __init__(self, tmp: Path, db_sync: str, pg_url: str | None, masters: int) -> None:
        self.tmp = tmp
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDRUN_")}
        self.env["GRIDRUN_DB_SYNC"] = db_sync
        self.procs: list[subprocess.Popen[bytes]] = []
        self.clients: list[httpx.Client] = []
        self.pg_url = pg_url
        self.masters = masters
        self.pids: list[int] = []  # the masters' pids, for a profiler

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gridrun", *args], cwd=self.tmp, env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        ports = [(free_port(), free_port()) for _ in range(self.masters)]
        if self.pg_url is None:
            ((http, grpc),) = ports
            up = self._spawn(
                "up", "--workers", "2", "--slots", "1", "--data-dir", str(self.tmp / "data"),
                "--http", f"127.0.0.1:{http}", "--grpc", f"127.0.0.1:{grpc}",
                "--log-level", "warning",
            )  # fmt: skip
            self.pids = [up.pid]  # `up` runs the master in its own process
        else:
            for http, grpc in ports:
                master = self._spawn(
                    "master", "--db", self.pg_url, "--http", f"127.0.0.1:{http}",
                    "--grpc", f"127.0.0.1:{grpc}", "--log-level", "warning",
                )  # fmt: skip
                self.pids.append(master.pid)
            addresses = [f"127.0.0.1:{grpc}" for _, grpc in ports]
            for i in range(2):
                prefer = addresses[i % len(addresses) :] + addresses[: i % len(addresses)]
                self._spawn(
                    "worker", "--master", ",".join(prefer), "--slots", "1", "--name", f"w{i}",
                    "--data-dir", str(self.tmp / f"w{i}"), "--log-level", "warning",
                )  # fmt: skip
        self.clients = [
            httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=60) for http, _ in ports
        ]

        def two_workers() -> bool:
            try:
                return self.clients[0].get("/v1/stats").json()["workers"]["online"] == 2
            except (httpx.TransportError, ValueError):
                return False

        wait_for(two_workers, 60, "the grid to start")

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        for proc in reversed(self.procs):
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _admin(server: str, statement: str) -> None:
    conn = await asyncpg.connect(server, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def measure(args: argparse.Namespace, pg_server: str | None, masters: int) -> dict[str, float]:
    """One configuration: throughput and latency on a fresh grid (and a fresh database)."""
    name = f"gridrun_bench_{secrets.token_hex(4)}"
    pg_url = None
    if pg_server is not None:
        asyncio.run(_admin(pg_server, f"CREATE DATABASE {name}"))
        pg_url = f"{pg_server.rsplit('/', 1)[0]}/{name}"
    try:
        with tempfile.TemporaryDirectory(prefix="gridrun-bench-") as tmp:
            grid = Grid(Path(tmp), args.db_sync, pg_url, masters)
            try:
                grid.start()
                latencies(grid.clients[0], 20)  # warm up
                out = f"{args.profile}.{'pg' if pg_server else 'sqlite'}{masters}"
                # `up` runs its master as a child: only the PostgreSQL masters are profiled
                profile = start_profile(out, grid.pids) if args.profile and pg_url else None
                rate = gridrun_rate(grid.clients, args.tasks)
                if profile is not None:
                    stop_profile(profile, out)
                lat, to_start = latencies(grid.clients[0], args.latency)
            finally:
                grid.stop()
    finally:
        if pg_server is not None:
            asyncio.run(_admin(pg_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    return {
        "rate": rate,
        "median_ms": statistics.median(lat),
        "p99_ms": percentile(lat, 0.99),
        "start_median_ms": statistics.median(to_start),
        "start_p99_ms": percentile(to_start, 0.99),
    }


def start_profile(out: str, pids: list[int]) -> subprocess.Popen[bytes]:
    """py-spy on the first master while the throughput run lasts (folded stacks in `out`)."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pids[0]), "--format", "raw", "--rate", "200",
         "--output", out, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop_profile(profile: subprocess.Popen[bytes], out: str) -> None:
    profile.send_signal(signal.SIGINT)
    profile.wait(timeout=60)
    print(f"profile of the first master during the run: {out} (py-spy folded stacks)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--latency", type=int, default=200)
    parser.add_argument("--db-sync", choices=["full", "normal"], default="full")
    parser.add_argument(
        "--db", help="a PostgreSQL server URL (postgresql://user@host:port/db) to compare with"
    )
    parser.add_argument(
        "--profile", help="py-spy folded stacks of the first PostgreSQL master to PREFIX.pg1/.pg2"
    )
    args = parser.parse_args()

    configs: list[tuple[str, str | None, int]] = [("sqlite, 1 master", None, 1)]
    if args.db:
        configs += [("postgresql, 1 master", args.db, 1), ("postgresql, 2 masters", args.db, 2)]
    xargs = xargs_rate(args.tasks, 2)
    results = {}
    for label, server, masters in configs:
        results[label] = measure(args, server, masters)
    xargs_after = xargs_rate(args.tasks, 2)

    baseline = (xargs + xargs_after) / 2
    sqlite = results["sqlite, 1 master"]["rate"]
    print(f"machine: {os.cpu_count()} cores; sqlite sync={args.db_sync}; 2 workers x 1 slot")
    print(
        f"xargs -P 2 -n 1 true       : {baseline:8.1f} tasks/s  (before {xargs:.1f}, after"
        f" {xargs_after:.1f})"
    )
    for label, r in results.items():
        print(
            f"gridrun, {label:21}: {r['rate']:8.1f} tasks/s  ratio to xargs"
            f" {r['rate'] / baseline:.3f}, to sqlite {r['rate'] / sqlite:.2f};"
            f" one at a time ({args.latency}): submit->started p50 {r['start_median_ms']:.1f} ms"
            f" p99 {r['start_p99_ms']:.1f} ms, submit->finished p50 {r['median_ms']:.1f} ms"
            f" p99 {r['p99_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
