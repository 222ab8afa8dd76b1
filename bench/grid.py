"""What the benches share: free ports, waiting, a grid of real gridrun processes, and a
PostgreSQL database of their own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx

from gridrun import model

TERMINAL = tuple(str(state) for state in model.TERMINAL)
GRIDRUN: tuple[str, ...] = (sys.executable, "-m", "gridrun")  # how a bench starts gridrun


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(every)


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (its own, not its children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@contextlib.contextmanager
def lone_master(db: str, tmp: str, *extra: str) -> Iterator[httpx.Client]:
    """A master with no workers on `db` (sync=full), ready; a client of its HTTP API. Stopped
    (SIGINT) afterwards."""
    http = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDRUN_")}
    master = subprocess.Popen(
        [*GRIDRUN, "master", "--db", db, "--db-sync", "full",
         "--http", f"127.0.0.1:{http}", "--grpc", f"127.0.0.1:{free_port()}",
         "--log-level", "warning", *extra],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=600) as client:

            def ready() -> bool:
                try:
                    return client.get("/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(ready, 60, "the master to start")
            yield client
    finally:
        master.send_signal(signal.SIGINT)
        master.wait(timeout=120)


async def _admin(server: str, statement: str) -> None:
    conn = await asyncpg.connect(server, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def database(server: str | None, tmp: Path) -> Iterator[str]:
    """A fresh database: a SQLite file in `tmp`, or a PostgreSQL database on `server` (a URL
    of an existing database there), dropped afterwards."""
    if server is None:
        yield str(tmp / "gridrun.db")
        return
    name = f"gridrun_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(server, f"CREATE DATABASE {name}"))
    try:
        yield f"{server.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(_admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


class Grid:
    """Real `gridrun master` processes on one database and `gridrun worker`s that know them all
    (each prefers a different master)."""

    def __init__(
        self,
        tmp: Path,
        db: str,
        masters: int = 1,
        db_sync: str = "full",
        worker_args: tuple[str, ...] | None = None,
        master_args: tuple[str, ...] = (),
    ) -> None:
        self.tmp = tmp
        self.master_args = master_args
        self.master_command = GRIDRUN  # (bench/statements.py runs it through sqltrace.py)
        # as root, tasks run as root unless a bench says otherwise (the worker's own default
        # is an unprivileged user: bench/run_as.py measures what that costs)
        if worker_args is None:
            worker_args = ("--run-as", "root") if os.geteuid() == 0 else ()
        self.worker_args = worker_args
        self.db = db
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDRUN_")}
        self.db_sync = db_sync
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports = [(free_port(), free_port()) for _ in range(masters)]
        self.masters: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.clients = [
            httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=120) for http, _ in self.ports
        ]

    @property
    def client(self) -> httpx.Client:
        return self.clients[0]

    def spawn(self, *args: str, command: tuple[str, ...] = GRIDRUN) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [*command, *args], cwd=self.tmp,
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def start_masters(self) -> None:
        for http, grpc in self.ports:
            self.masters.append(
                self.spawn(
                    "master",
                    "--db",
                    self.db,
                    "--db-sync",
                    self.db_sync,
                    "--http",
                    f"127.0.0.1:{http}",
                    "--grpc",
                    f"127.0.0.1:{grpc}",
                    "--log-level",
                    "warning",
                    *self.master_args,
                    command=self.master_command,
                )
            )

        def healthy() -> bool:
            try:
                return all(c.get("/healthz").status_code == 200 for c in self.clients)
            except httpx.TransportError:
                return False

        wait_for(healthy, 60, "the masters to start", every=0.05)

    def start_workers(self, count: int, slots: int) -> None:
        addresses = [f"127.0.0.1:{grpc}" for _, grpc in self.ports]
        for i in range(count):
            prefer = addresses[i % len(addresses) :] + addresses[: i % len(addresses)]
            self.workers.append(
                self.spawn(
                    "worker",
                    "--master",
                    ",".join(prefer),
                    "--slots",
                    str(slots),
                    "--name",
                    f"w{i}",
                    "--data-dir",
                    str(self.tmp / f"w{i}"),
                    "--log-level",
                    "warning",
                    *self.worker_args,
                )
            )

        def online() -> bool:
            try:
                return self.client.get("/v1/stats").json()["workers"]["online"] == count
            except (httpx.TransportError, ValueError):
                return False

        wait_for(online, 60, f"{count} workers to connect", every=0.05)

    def submit(self, argv: list[str], n: int, batch: int = 1000) -> list[str]:
        """Submit n tasks in batches (alternating between the masters); return their ids."""
        ids: list[str] = []
        for i, offset in enumerate(range(0, n, batch)):
            body = {"tasks": [{"argv": argv}] * min(batch, n - offset)}
            answer = self.clients[i % len(self.clients)].post("/v1/tasks", json=body)
            answer.raise_for_status()
            ids += [t["id"] for t in answer.json()["tasks"]]
        return ids

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def one_master(prefix: str, server: str | None = None) -> Iterator[Grid]:
    """A master on a fresh SQLite file in a temporary directory (or a fresh database on the
    PostgreSQL `server`), stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, database(server, Path(tmp)) as db:
        grid = Grid(Path(tmp), db)
        try:
            grid.start_masters()
            yield grid
        finally:
            grid.stop()


def start_profile(out: str, pid: int) -> subprocess.Popen[bytes]:
    """py-spy on one process until stop_profile (folded stacks in `out`; `.[bench]` extra)."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
         "--output", out, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop_profile(profile: subprocess.Popen[bytes], out: str) -> None:
    profile.send_signal(signal.SIGINT)
    profile.wait(timeout=60)
    print(f"profile: {out} (py-spy folded stacks)")
