"""A throwaway PostgreSQL database per test.

The server: PG_TEST_URL if set; else the one on 127.0.0.1:5432 if something answers there;
else one this test session starts from the `pgserver` wheel (a `dev` dependency: PostgreSQL's
binaries, run in a temp dir on a Unix socket, also as root), stopped and removed when the
session ends. So `make test` needs no database server on the machine. Tests that need
PostgreSQL fail (not skip) when none can be had: CI runs them all.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import cache
from urllib.parse import urlsplit, urlunsplit

import asyncpg

LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@cache
def server() -> str:
    """The admin URL of the server the tests use (see the module docstring)."""
    given = os.environ.get("PG_TEST_URL")
    if given:
        return given
    if _answers("127.0.0.1", 5432):
        return LOCAL
    return _throwaway()


def _throwaway() -> str:
    import pgserver  # (only when no server is at hand: it starts one)

    home = tempfile.mkdtemp(prefix="gridrun-pg-")
    started = pgserver.get_server(home, cleanup_mode="stop")

    def remove() -> None:
        started.cleanup()
        shutil.rmtree(home, ignore_errors=True)

    atexit.register(remove)
    return str(started.get_uri())


def url_of(name: str) -> str:
    """The URL of database `name` on the server (any query, e.g. a socket's host, kept)."""
    parts = urlsplit(server())
    return urlunsplit(parts._replace(path=f"/{name}"))


def name_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def address_of(url: str) -> tuple[str, int] | str:
    """Where the server of `url` listens: (host, port), or its Unix socket's path."""
    parts = urlsplit(url)
    query = dict(q.split("=", 1) for q in parts.query.split("&") if "=" in q)
    port = parts.port or 5432
    if "host" in query and query["host"].startswith("/"):
        return f"{query['host']}/.s.PGSQL.{port}"
    return (parts.hostname or "127.0.0.1", port)


async def _admin(statement: str) -> None:
    try:
        conn = await asyncpg.connect(server(), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {server()} ({exc!r}); unset PG_TEST_URL to have"
            " the tests start their own"
        ) from None
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def create() -> str:
    name = f"gridrun_test_{secrets.token_hex(5)}"
    await _admin(f"CREATE DATABASE {name}")
    return name


async def drop(name: str) -> None:
    await _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@asynccontextmanager
async def database() -> AsyncIterator[str]:
    """A fresh database's URL; dropped afterwards (its connections are ended first)."""
    name = await create()
    try:
        yield url_of(name)
    finally:
        await drop(name)


@contextmanager
def database_sync() -> Iterator[str]:
    name = asyncio.run(create())
    try:
        yield url_of(name)
    finally:
        asyncio.run(drop(name))


async def terminate_connections(url: str) -> int:
    """End every connection to the database of `url` (as a crashing server would)."""
    name = name_of(url)
    conn = await asyncpg.connect(server(), timeout=10)
    try:
        ended: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        return ended
    finally:
        await conn.close()


def _major(version_text: str) -> int:
    """16 of "pg_dump (PostgreSQL) 16.2" or of "16.2 (Debian ...)"."""
    for word in version_text.split():
        head = word.split(".")[0]
        if head.isdigit():
            return int(head)
    return 0


def client_tool(name: str) -> str | None:
    """A PostgreSQL client program (pg_dump, pg_restore) that can talk to the test server:
    of its major version or newer (pg_dump refuses a newer server). The `pgserver` wheel's
    own first (a dev dependency, so on every machine), else the one on PATH; None if
    neither can."""
    import subprocess

    async def server_major() -> int:
        conn = await asyncpg.connect(server(), timeout=10)
        try:
            return _major(str(await conn.fetchval("SHOW server_version")))
        finally:
            await conn.close()

    wanted = asyncio.run(server_major())
    candidates = [shutil.which(name)]
    try:
        from pgserver._commands import POSTGRES_BIN_PATH

        candidates.insert(0, str(POSTGRES_BIN_PATH / name))
    except ImportError:
        pass
    for tool in candidates:
        if tool is None or not os.access(tool, os.X_OK):
            continue
        said = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
        if _major(said) >= wanted:
            return tool
    return None
