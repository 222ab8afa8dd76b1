"""`gridrun up`: a local grid in the foreground — one master and N workers as child processes;
with `--masters M` (M > 1), M masters on an embedded PostgreSQL (the `pgserver` wheel:
`pip install 'gridrun[ha]'`; its data kept under the data dir), each worker knowing them all,
so failover can be watched on a laptop: kill a master and the grid goes on.

Children run in their own process group so a Ctrl-C reaches only this supervisor, which then
stops them in order: workers first (they stop their tasks and deliver the results), then the
master. Each child also gets SIGTERM from the kernel if the supervisor itself dies, so no
process outlives it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import httpx
import typer

from gridrun.cli.common import LogLevel, app, guard
from gridrun.client.settings import DEFAULT_URL
from gridrun.errors import ClientError
from gridrun.forms import split_address
from gridrun.worker.proctree import PR_SET_PDEATHSIG, prctl

READY_TIMEOUT_S = 30.0
DRAIN_GRACE_S = 10.0  # Ctrl-C: running tasks get this long to finish
STOP_TIMEOUT_S = DRAIN_GRACE_S + 20.0


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel for SIGTERM when the parent dies."""
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


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
        masters: int = 1,
    ) -> None:
        self.masters = masters
        self.workers = workers
        self.slots = slots
        self.data_dir = data_dir
        self.http = http
        self.grpc = grpc
        self.log_level = log_level
        self.master: subprocess.Popen[bytes] | None = None  # the first (the only, without HA)
        self.master_list: list[subprocess.Popen[bytes]] = []
        self.children: list[subprocess.Popen[bytes]] = []
        self._postgres: Any = None  # pgserver's server, with --masters > 1
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
        grpc_host, grpc_port = split_address(self.grpc)
        db = str(self.data_dir / "gridrun.db")
        if self.masters > 1:
            db = self._start_postgres()
        urls, targets = [], []
        for i in range(self.masters):  # master i listens on the given ports + i
            http = (
                f"{http_host}:{http_port + i}"
                if ":" not in http_host
                else f"[{http_host}]:{http_port + i}"
            )
            grpc = (
                f"{grpc_host}:{grpc_port + i}"
                if ":" not in grpc_host
                else f"[{grpc_host}]:{grpc_port + i}"
            )
            args = ["master", "--db", db, "--http", http, "--grpc", grpc]
            if self.masters > 1:  # (every master of one database seals secrets with one key)
                args += ["--secret-key-file", str(self.data_dir / "secret.key")]
            master = self._spawn(*args)
            self.master_list.append(master)
            self.master = self.master or master
            urls.append(f"http://{http}")
            targets.append(grpc)
            if not self._wait_ready(urls[-1], master):
                return 1
        url, target = urls[0], ",".join(targets)
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
        masters = ", ".join(urls) + " on PostgreSQL" if len(urls) > 1 else f"{url} (gRPC {target})"
        # the CLI dials DEFAULT_URL unless told: say where this grid is when it is elsewhere
        where = "" if url == DEFAULT_URL else f"GRIDRUN_URL={url} "
        print(
            f"\ngridrun is up: master {masters}, {self.workers} worker(s).\n"
            f"  dashboard: {url}/   metrics: {url}/metrics\n"
            f"  try:  {where}gridrun run -- echo hello\n"
            f"        curl -X POST -H 'Content-Type: application/json'"
            f' -d \'{{"cmd": "touch test.txt"}}\' {url}/tasks\n'
            f"  Ctrl-C stops the grid.\n",
            file=sys.stderr,
            flush=True,
        )
        reported: set[int] = set()
        while self._stop_signal is None:
            for child in self.children:
                if child.poll() is None or child.pid in reported:
                    continue
                alive = [m for m in self.master_list if m.poll() is None]
                if child in self.master_list and alive:  # HA: the others go on
                    reported.add(child.pid)
                    print(
                        f"gridrun up: a master (pid {child.pid}) exited with {child.returncode};"
                        f" the grid goes on with {len(alive)} other(s)",
                        file=sys.stderr,
                    )
                    continue
                role = "the master" if child in self.master_list else "a worker"
                print(
                    f"gridrun up: {role} (pid {child.pid}) exited with"
                    f" {child.returncode}; stopping the grid",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.2)
        return 0

    def _start_postgres(self) -> str:
        """An embedded PostgreSQL for the masters (data under the data dir, kept); its URL."""
        try:
            with warnings.catch_warnings():  # (platformdirs warns of XDG_RUNTIME_DIR unset:
                warnings.simplefilter("ignore")  # a worry of its, not of the user's)
                from pgserver import get_server  # type: ignore[attr-defined]
        except ImportError:
            raise ClientError(
                "gridrun up --masters needs an embedded PostgreSQL: pip install 'gridrun[ha]'"
                " (or run masters on your own server: gridrun master --db postgresql://...)"
            ) from None
        home = (self.data_dir / "postgres").resolve()
        home.mkdir(parents=True, exist_ok=True)
        self._postgres = get_server(home, cleanup_mode="stop")
        return str(self._postgres.get_uri())

    def _wait_ready(self, url: str, master: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and self._stop_signal is None:
            if master.poll() is not None:
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
        """Workers first, then the masters, then their PostgreSQL; SIGKILL whatever ignores
        SIGTERM too long."""
        workers = [c for c in self.children if c not in self.master_list]
        for group in (workers, self.master_list):
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
        if self._postgres is not None:
            self._postgres.cleanup()  # stops it; its data stays for the next `up`


@app.command()
def up(
    workers: Annotated[int, typer.Option(envvar="GRIDRUN_WORKERS", min=0, max=64)] = 2,
    masters: Annotated[
        int,
        typer.Option(
            envvar="GRIDRUN_MASTERS",
            min=1,
            max=9,
            help="Masters (more than 1: on an embedded PostgreSQL, ports counted up from"
            " --http and --grpc; needs pip install 'gridrun[ha]').",
        ),
    ] = 1,
    slots: Annotated[
        int | None, typer.Option(envvar="GRIDRUN_SLOTS", help="Slots per worker.")
    ] = None,
    data_dir: Annotated[Path, typer.Option(envvar="GRIDRUN_DATA_DIR")] = Path("gridrun-data"),
    http: Annotated[str, typer.Option(envvar="GRIDRUN_HTTP")] = "127.0.0.1:9092",
    grpc: Annotated[str, typer.Option(envvar="GRIDRUN_GRPC")] = "127.0.0.1:50051",
    log_level: LogLevel = "info",
) -> None:
    """Start a local grid in the foreground: one master and N workers. Ctrl-C stops all."""
    with guard:
        code = Grid(
            workers=workers,
            slots=slots,
            data_dir=data_dir,
            http=http,
            grpc=grpc,
            log_level=log_level,
            masters=masters,
        ).run()
    raise typer.Exit(code)
