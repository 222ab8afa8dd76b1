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
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import grpc
import uvicorn

from gridrun import transport
from gridrun._proto import node_pb2_grpc, worker_pb2_grpc
from gridrun.auth import Role, Tokens
from gridrun.certs import dns_names
from gridrun.clock import Clock, SystemClock
from gridrun.errors import ConfigError, Unavailable
from gridrun.master.core.access import Access
from gridrun.master.core.audit import Audit
from gridrun.master.core.sealing import Sealer
from gridrun.master.core.sessions import Sessions
from gridrun.master.core.wiring import wire
from gridrun.master.http.api import create_api
from gridrun.master.http.guard import AllowedHosts
from gridrun.master.settings import MasterConfig
from gridrun.master.wire.compat import NodeServicer
from gridrun.master.wire.file_calls import FileCalls
from gridrun.master.wire.rpc import Caps, WorkerServicer
from gridrun.store import Store
from gridrun.store.postgres import PostgresStore, is_postgres_url, redact
from gridrun.store.sqlite import SqliteStore

log = logging.getLogger("gridrun.master")
SECRET_KEY_NAME = "secret.key"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_bind_warnings(config: MasterConfig) -> list[str]:
    """What is unsafe about listening beyond loopback with these settings. Without --insecure
    that is a refusal (ConfigError); with it, the loud warnings to log and show in /healthz."""
    tokens = Tokens(config.tokens)
    tls = config.tls_cert is not None
    gaps = []
    if not is_loopback(config.http_host):
        if not tokens.enabled:
            gaps.append(f"HTTP on {config.http_host} has no API tokens: anyone can submit")
        if not tls:
            gaps.append(f"HTTP on {config.http_host} is plaintext: tokens and output are exposed")
    if not is_loopback(config.grpc_host):
        if not tokens.join_required and config.client_ca is None:
            gaps.append(
                f"gRPC on {config.grpc_host} has no join token or client CA: anyone can join"
                " as a worker and receive tasks"
            )
        if not tls:
            gaps.append(f"gRPC on {config.grpc_host} is plaintext: commands are exposed")
    if gaps and not config.insecure:
        raise ConfigError(
            "refusing to listen beyond loopback: "
            + "; ".join(gaps)
            + ". Configure tokens (`gridrun token create`) and TLS (`gridrun certs`), listen"
            " on 127.0.0.1, or pass --insecure (GRIDRUN_INSECURE=1) to accept the risk."
        )
    return [f"INSECURE: {gap}" for gap in gaps]


def data_dir(config: MasterConfig) -> Path:
    """Where the master keeps its files: beside the SQLite file (PostgreSQL: gridrun-data/
    of the working directory)."""
    return Path("gridrun-data") if is_postgres_url(config.db) else Path(config.db).parent


def secret_key_file(config: MasterConfig) -> Path:
    """Where the key that seals secret_env lives: as given, else beside the SQLite file (with
    PostgreSQL, in gridrun-data/ of the working directory: give every master the same file)."""
    if config.secret_key_file is not None:
        return config.secret_key_file
    if is_postgres_url(config.db):
        return Path("gridrun-data") / SECRET_KEY_NAME
    return Path(config.db).parent / SECRET_KEY_NAME


def allowed_hosts(config: MasterConfig) -> AllowedHosts:
    """The names the HTTP API answers to: those given, the name it listens on, and the DNS
    names of its TLS certificate (the names clients were told to dial)."""
    own = [config.http_host]
    if config.tls_cert is not None:
        own += dns_names(config.tls_cert)
    return AllowedHosts(config.allowed_hosts, own)


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
        self.tokens = Tokens(config.tokens)
        self.audit = Audit(config.audit_log, self.clock)
        self.access = Access(
            self.tokens, self.audit, bind_worker_certs=config.client_ca is not None
        )
        self.store: Store
        if is_postgres_url(config.db):
            self.store = PostgresStore(config.db, pool_size=config.db_pool)
        else:
            self.store = SqliteStore(Path(config.db), synchronous=config.db_sync)
        self.sessions = Sessions()
        self.sealer = Sealer.from_file(secret_key_file(config))
        self.core = wire(
            self.store,
            self.clock,
            replace(config.core(), alloc_dir=config.alloc_dir or str(data_dir(config) / "alloc")),
            self.sessions,
            sealer=self.sealer,
            grants=self.access.grants,
        )
        self.service = self.core.service
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
            await self.core.peers.start()
            await self.core.allocator.admit_running()  # (before a worker of one can knock)
            await self._start_servers()
        except BaseException:
            await self.close()
            raise
        self.core.allocator.address = self.config.advertise or advertised(
            self.config.grpc_host, self.grpc_port
        )
        self._tasks += [
            asyncio.create_task(self._dispatch_loop(), name="dispatch"),
            asyncio.create_task(self._history_loop(), name="history"),
            asyncio.create_task(self._alloc_loop(), name="allocations"),
        ]
        self.core.liveness.start()
        self.core.signals.wake()  # tasks queued before a restart
        log.info(
            "master ready: %s://%s:%d  grpc%s %s  db %s  auth %s",
            "https" if self.config.tls_cert else "http",
            self.config.http_host,
            self.http_port,
            "+tls" if self.config.tls_cert else "",
            _grpc_address(self.config.grpc_host, self.grpc_port),
            redact(self.config.db),
            self._auth_summary(),
        )

    def _auth_summary(self) -> str:
        parts = []
        api = sum(e.role is not Role.WORKER for e in self.tokens.entries)
        parts.append(f"{api} API token(s)" if self.tokens.enabled else "API open (no tokens)")
        if self.tokens.join_required:
            parts.append("join token required")
        if self.config.client_ca is not None:
            parts.append("worker certificates required")
        return ", ".join(parts)

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

        config = self.config
        self._grpc = grpc.aio.server(options=[*transport.MESSAGE_LIMITS, ("grpc.so_reuseport", 0)])
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(
            WorkerServicer(
                self.core.streams,
                self.core.trust,
                self.clock,
                self.access,
                Caps(
                    slots=config.max_worker_slots,
                    cpus=config.max_worker_cpus,
                    memory_mb=config.max_worker_memory_mb,
                    gpus=config.max_worker_gpus,
                ),
                FileCalls(self.core.files, self.access),
            ),
            self._grpc,
        )
        node_pb2_grpc.add_NodeServiceServicer_to_server(
            NodeServicer(self.core.streams, self.clock, self.access), self._grpc
        )
        address = _grpc_address(config.grpc_host, config.grpc_port)
        try:
            if config.tls_cert is not None and config.tls_key is not None:
                credentials = transport.server_credentials(
                    config.tls_cert, config.tls_key, config.client_ca
                )
                self.grpc_port = self._grpc.add_secure_port(address, credentials)
            else:
                self.grpc_port = self._grpc.add_insecure_port(address)
        except RuntimeError:
            sock.close()
            raise ConfigError(f"cannot listen for gRPC on {address} (in use?)") from None
        except ConfigError:
            sock.close()
            raise
        await self._grpc.start()

        api = create_api(
            self.core,
            self.access,
            max_body=config.max_body,
            warnings=self.warnings,
            allowed_hosts=allowed_hosts(config),
        )
        self._http = _Uvicorn(
            uvicorn.Config(
                api,
                log_level="warning",
                access_log=False,
                lifespan="off",
                ssl_certfile=config.tls_cert,
                ssl_keyfile=config.tls_key,
            )
        )
        self._tasks.append(asyncio.create_task(self._http.serve(sockets=[sock]), name="http"))
        while not self._http.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Stop accepting, end worker streams, stop loops, close the store — in that order."""
        self.core.signals.stopping.set()
        if self._http is not None:
            self._http.should_exit = True
        for session in self.sessions:
            session.close("the master is shutting down")  # ends streams now, not after the grace
        if self._grpc is not None:
            await self._grpc.stop(self.config.shutdown_grace_s)
        await self._stop_http()
        for task in self._tasks:
            if task.get_name() != "http":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.core.liveness.close()
        await self.core.peers.close()
        await self.store.close()
        self.audit.close()
        log.info("master stopped")

    async def _stop_http(self) -> None:
        """Let requests in flight finish (up to the grace), then stop. Idle keep-alive
        connections are not waited for: over TLS each would hold the shutdown for asyncio's
        30 s SSL close timeout, waiting for a close_notify an idle client never sends."""
        http = self._http
        serving = next((t for t in self._tasks if t.get_name() == "http"), None)
        if http is None or serving is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.shutdown_grace_s
        while not serving.done():
            if not http.server_state.tasks or loop.time() > deadline:
                http.force_exit = True
            await asyncio.wait({serving}, timeout=0.05)

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
        wanted = self.core.signals.dispatch_wanted
        while True:
            await wanted.wait()
            wanted.clear()
            try:
                await self.core.dispatcher.dispatch()
            except Unavailable as exc:  # the store cannot serve now: said once a second
                log.warning("dispatch pass failed; retrying in 1s: %s", exc.message)
                await asyncio.sleep(1)
                wanted.set()
            except Exception:
                log.exception("dispatch pass failed; retrying in 1s")
                await asyncio.sleep(1)
                wanted.set()

    async def _history_loop(self) -> None:
        """A sample of the grid for the dashboard's charts every step, on the step's
        boundaries of the clock (so the samples of two masters line up)."""
        history = self.core.metrics.history
        step_ms = max(1, round(history.step_s * 1000))
        while True:
            await asyncio.sleep((step_ms - self.clock.now_ms() % step_ms) / 1000)
            try:
                counts = await self.service.count_by_state()
                workers = await self.service.workers()
            except Exception as exc:  # the store cannot answer now: this step is a gap
                log.debug("no history sample this step: %r", exc)
                continue
            history.sample(self.clock.now_ms(), counts, workers)

    async def _alloc_loop(self) -> None:
        """The allocation queues looked at every --alloc-interval (see core.allocator)."""
        while True:
            try:
                await self.core.allocator.tick()
            except Unavailable as exc:
                log.warning("the allocation queues could not be looked at: %s", exc.message)
            except Exception:
                log.exception("the allocation queues could not be looked at")
            await asyncio.sleep(self.config.alloc_interval_s)


def advertised(host: str, port: int) -> str:
    """The gRPC address to give workers elsewhere: a wildcard listen address names this host."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    return _grpc_address(host, port)


async def run_master(config: MasterConfig) -> None:
    """Run until SIGINT or SIGTERM, then shut down in order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Master(config):
        await stop.wait()
        log.info("signal received: shutting down")
