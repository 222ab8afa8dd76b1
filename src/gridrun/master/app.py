"""The master process: builds its object graph in one place and owns every loop and server.

`Master` is an async context manager: `start` opens the store, binds the gRPC and HTTP ports and
starts the dispatch and liveness loops; `close` stops them in order (stop accepting, let streams
end, close the store), so nothing acknowledged is left unwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Literal

import grpc
import uvicorn
from pydantic import BaseModel, Field

from gridrun._proto import node_pb2_grpc, worker_pb2_grpc
from gridrun.clock import Clock, SystemClock
from gridrun.errors import ConfigError
from gridrun.master.api import create_api
from gridrun.master.compat import NodeServicer
from gridrun.master.rpc import WorkerServicer
from gridrun.master.service import Service, ServiceConfig
from gridrun.master.sessions import Sessions
from gridrun.model import DEFAULT_OUTPUT_CAP
from gridrun.store.sqlite import SqliteStore

log = logging.getLogger("gridrun.master")

GRPC_MAX_MESSAGE = 8 * 1024 * 1024


class MasterConfig(BaseModel):
    """Every setting of a master; the CLI fills it from flags and GRIDRUN_* variables."""

    db: Path = Path("gridrun-data/gridrun.db")
    db_sync: Literal["full", "normal"] = "full"
    http_host: str = "127.0.0.1"
    http_port: int = Field(9092, ge=0, le=65535)
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(50051, ge=0, le=65535)
    insecure: bool = False
    heartbeat_interval_s: float = Field(2.0, gt=0)
    liveness_timeout_s: float = Field(10.0, gt=0)
    kill_grace_s: float = Field(5.0, ge=0)
    output_cap: int = Field(DEFAULT_OUTPUT_CAP, ge=0)
    max_body: int = Field(16 * 1024 * 1024, gt=0)
    shutdown_grace_s: float = Field(5.0, ge=0)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_bind_warnings(config: MasterConfig) -> list[str]:
    """Refuse a non-loopback listen unless --insecure; with it, return the loud warnings."""
    public = [h for h in (config.http_host, config.grpc_host) if not is_loopback(h)]
    if not public:
        return []
    if not config.insecure:
        raise ConfigError(
            f"refusing to listen on {', '.join(public)}: anyone who can reach it could run"
            " commands on your workers, and authentication is not configured. Listen on"
            " 127.0.0.1, or pass --insecure (GRIDRUN_INSECURE=1) to accept that risk."
        )
    return [
        f"INSECURE: listening on {', '.join(public)} without authentication or TLS;"
        " anyone who can reach these ports can run commands on every worker"
    ]


def _grpc_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the master process owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Master:
    def __init__(self, config: MasterConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.warnings = public_bind_warnings(config)
        self.store = SqliteStore(config.db, synchronous=config.db_sync)
        self.sessions = Sessions()
        self.service = Service(
            self.store,
            self.clock,
            ServiceConfig(
                heartbeat_interval_s=config.heartbeat_interval_s,
                liveness_timeout_s=config.liveness_timeout_s,
                output_cap=config.output_cap,
                kill_grace_s=config.kill_grace_s,
            ),
            self.sessions,
        )
        self.http_port = config.http_port
        self.grpc_port = config.grpc_port
        self._grpc: grpc.aio.Server | None = None
        self._http: _Uvicorn | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for warning in self.warnings:
            log.warning(warning)
        await self.store.open()
        try:
            await self._start_servers()
        except BaseException:
            await self.close()
            raise
        self._tasks += [
            asyncio.create_task(self._dispatch_loop(), name="dispatch"),
            asyncio.create_task(self._liveness_loop(), name="liveness"),
        ]
        self.service.dispatch_wanted.set()  # tasks queued before a restart
        log.info(
            "master ready: http://%s:%d  grpc %s  db %s",
            self.config.http_host,
            self.http_port,
            _grpc_address(self.config.grpc_host, self.grpc_port),
            self.config.db,
        )

    async def _start_servers(self) -> None:
        # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only when it does,
        # and without it every keep-alive response waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(
            socket.AF_INET6 if ":" in self.config.http_host else socket.AF_INET,
            socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
        )
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.http_host, self.config.http_port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"cannot listen for HTTP on {self.config.http_host}:{self.config.http_port}:"
                f" {exc.strerror}"
            ) from None
        self.http_port = sock.getsockname()[1]

        self._grpc = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
                ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
                ("grpc.so_reuseport", 0),
            ]
        )
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(
            WorkerServicer(self.service, self.clock), self._grpc
        )
        node_pb2_grpc.add_NodeServiceServicer_to_server(
            NodeServicer(self.service, self.clock), self._grpc
        )
        address = _grpc_address(self.config.grpc_host, self.config.grpc_port)
        try:
            self.grpc_port = self._grpc.add_insecure_port(address)
        except RuntimeError:
            sock.close()
            raise ConfigError(f"cannot listen for gRPC on {address} (in use?)") from None
        await self._grpc.start()

        api = create_api(self.service, max_body=self.config.max_body, warnings=self.warnings)
        self._http = _Uvicorn(
            uvicorn.Config(api, log_level="warning", access_log=False, lifespan="off")
        )
        self._tasks.append(asyncio.create_task(self._http.serve(sockets=[sock]), name="http"))
        while not self._http.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Stop accepting, end worker streams, stop loops, close the store — in that order."""
        if self._http is not None:
            self._http.should_exit = True
        for session in self.sessions:
            session.close("the master is shutting down")  # ends streams now, not after the grace
        if self._grpc is not None:
            await self._grpc.stop(self.config.shutdown_grace_s)
        for task in self._tasks:
            if task.get_name() != "http":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.store.close()
        log.info("master stopped")

    async def __aenter__(self) -> Master:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _dispatch_loop(self) -> None:
        wanted = self.service.dispatch_wanted
        while True:
            await wanted.wait()
            wanted.clear()
            try:
                await self.service.dispatch()
            except Exception:
                log.exception("dispatch pass failed; retrying in 1s")
                await asyncio.sleep(1)
                wanted.set()

    async def _liveness_loop(self) -> None:
        period = min(1.0, self.config.liveness_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            try:
                await self.service.check_liveness()
                await self.service.housekeeping()
            except Exception:
                log.exception("liveness check failed; retrying")


async def run_master(config: MasterConfig) -> None:
    """Run until SIGINT or SIGTERM, then shut down in order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Master(config):
        await stop.wait()
        log.info("signal received: shutting down")
