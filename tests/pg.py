"""A throwaway PostgreSQL database per test, on the server the machine runs (127.0.0.1:5432).

Set PG_TEST_URL to use another server. Tests that need PostgreSQL fail (not skip) when it is
not reachable: CI runs them all.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import asyncpg

SERVER = os.environ.get("PG_TEST_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def url_of(name: str) -> str:
    base = SERVER.rsplit("/", 1)[0]
    return f"{base}/{name}"


async def _admin(statement: str) -> None:
    try:
        conn = await asyncpg.connect(SERVER, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {SERVER} ({exc!r}); start it with"
            " `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
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
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(SERVER, timeout=10)
    try:
        ended: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        return ended
    finally:
        await conn.close()
