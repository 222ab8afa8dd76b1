"""PostgreSQL implementation of `Store` (asyncpg): the shared verbs for several masters at once.

Each verb is one transaction on a pooled connection, with row locks from the `Dialect` (claims
skip rows another master is claiming). Notices a verb makes are sent in its transaction, so
other masters hear of a change exactly when it commits; a dedicated connection LISTENs for
theirs and reconnects when lost. A database that cannot be reached makes verbs raise
`Unavailable` (HTTP 503) within `timeout_s` instead of hanging; nothing is acknowledged that
is not committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import asyncpg

from gridrun.errors import InsufficientStorage, Unavailable
from gridrun.store import Notice, NoticeKind
from gridrun.store import postgres_sql as ddl
from gridrun.store.relational import RelationalStore
from gridrun.store.relational_tx import Dialect, Row, Tx

T = TypeVar("T")
log = logging.getLogger("gridrun.store")

# a step that lost a race with another master's step (both change the same rows) is run again
RETRIED = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.UniqueViolationError,  # e.g. one idempotency key submitted to two masters
)
RETRIES = 5
# the database is unreachable, restarting, or killed our connection
LOST = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, pg_terminate_backend
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InternalClientError,  # a connection that broke mid-operation
    # the server is up but cannot serve now: the database does not accept connections
    # (ALLOW_CONNECTIONS false), too many connections, disk or memory exhausted, a read-only
    # standby or default_transaction_read_only
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)
# a connection found dead, rather than a server that cannot be reached: worth another one
RECONNECT = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    ConnectionResetError,
    BrokenPipeError,
)
LISTEN_RETRY_S = 0.5
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


def _set(event: asyncio.Event, *_: object) -> None:
    event.set()


async def _reset(conn: Connection) -> None:
    """What a connection needs before going back to the pool. Steps set no session state
    (their locks and notices end with their transaction), so the default reset's extra round
    trip per step (RESET ALL, UNLISTEN, ...) buys nothing; an unfinished transaction is undone."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def is_postgres_url(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


@functools.lru_cache(maxsize=512)
def numbered(query: str) -> str:
    """`?` placeholders -> PostgreSQL's `$1, $2, ...` (no query has a literal `?`)."""
    parts = query.split("?")
    out = [parts[0]]
    for i, part in enumerate(parts[1:], start=1):
        out.append(f"${i}{part}")
    return "".join(out)


def literal(text: str) -> str:
    """A string as an SQL literal, in the E'' form (read the same whatever
    standard_conforming_strings says)."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def commit(notices: Sequence[str]) -> str:
    """COMMIT, with the step's notices sent in the same round trip (one simple query: a
    notice that fails aborts the transaction, and the COMMIT is not run)."""
    if not notices:
        return "COMMIT"
    payloads = ", ".join(map(literal, notices))
    return f"SELECT pg_notify('gridrun', p) FROM unnest(ARRAY[{payloads}]) AS p; COMMIT"


class PgTx:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.notices: list[str] = []

    async def one(self, query: str, *args: Any) -> Row | None:
        return cast(Row | None, await self._conn.fetchrow(numbered(query), *args))

    async def all(self, query: str, *args: Any) -> list[Row]:
        return cast(list[Row], await self._conn.fetch(numbered(query), *args))

    async def run(self, query: str, *args: Any) -> None:
        await self._conn.execute(numbered(query), *args)

    async def many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._conn.executemany(numbered(query), rows)

    async def insert_tasks(self, rows: Sequence[Sequence[Any]]) -> list[int]:
        columns = [list(column) for column in zip(*rows, strict=True)]
        seqs = {r[0]: r[1] for r in await self._conn.fetch(ddl.INSERT_TASKS, *columns)}
        return [seqs[row[0]] for row in rows]

    async def notify(self, payload: str) -> None:
        if payload not in self.notices:
            self.notices.append(payload)


class PostgresStore(RelationalStore):
    dialect = Dialect(
        lock=" FOR UPDATE",
        skip_locked=" FOR UPDATE SKIP LOCKED",
        share_lock=" FOR SHARE",
        label_clause="(labels::jsonb ->> ?) = ?",
        count_by_state=ddl.COUNT_BY_STATE,
        claim_lock=ddl.TAKE_CLAIM_LOCK,
        claim_batch=ddl.CLAIM_BATCH,
        gc_lock=ddl.TRY_GC_LOCK,
        db_size="SELECT pg_database_size(current_database())",
    )
    shared = True

    def __init__(
        self,
        url: str,
        *,
        origin: str | None = None,
        pool_size: int = 10,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(origin or secrets.token_hex(6))
        self._url = url
        self._pool_size = pool_size
        self._timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None
        self._listening: asyncio.Task[None] | None = None

    def _unavailable(self, exc: BaseException) -> Unavailable:
        if isinstance(exc, asyncpg.exceptions.DiskFullError):
            return InsufficientStorage(f"the database {redact(self._url)} is out of disk: {exc}")
        return Unavailable(
            f"the database {redact(self._url)} is unreachable or cannot serve now: {exc!r}"
        )

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._url,
                min_size=1,
                max_size=self._pool_size,
                timeout=self._timeout_s,
                command_timeout=self._timeout_s,
                reset=_reset,
            )
            async with self._pool.acquire() as conn:
                await self._migrate(conn)
        except (*LOST, asyncpg.exceptions.PostgresError) as exc:
            if self._pool is not None:
                self._pool.terminate()
                self._pool = None
            raise self._unavailable(exc) from None

    async def _migrate(self, conn: Connection) -> None:
        async with conn.transaction():
            await conn.execute(ddl.TAKE_MIGRATION_LOCK, ddl.MIGRATION_LOCK)
            await conn.execute(ddl.CREATE_VERSION_TABLE)
            version = await conn.fetchval(ddl.SELECT_VERSION)
            if version > ddl.SCHEMA_VERSION:
                raise Unavailable(
                    f"{redact(self._url)} has schema version {version}, newer than this gridrun"
                    f" ({ddl.SCHEMA_VERSION}); upgrade gridrun"
                )
            for migration in ddl.MIGRATIONS[version:]:
                await conn.execute(migration)
            if version < ddl.SCHEMA_VERSION:
                await conn.execute(ddl.SET_VERSION.format(version=ddl.SCHEMA_VERSION))
                log.info("database schema migrated from version %d to %d", version,
                         ddl.SCHEMA_VERSION)  # fmt: skip

    async def close(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
            await asyncio.gather(self._listening, return_exceptions=True)
            self._listening = None
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._timeout_s)
            except (*LOST, asyncpg.exceptions.PostgresError):
                pool.terminate()

    def _acquire(self) -> Any:
        if self._pool is None:
            raise Unavailable("the store is closed")
        return self._pool.acquire(timeout=self._timeout_s)

    async def read(self, step: Callable[[Tx], Awaitable[T]]) -> T:
        for attempt in range(1, RETRIES + 1):
            try:
                async with self._acquire() as conn:
                    return await step(PgTx(conn))
            except LOST as exc:
                # a pooled connection the server ended (restart, pg_terminate_backend) is
                # found dead only when used: try a fresh one, but do not wait for the server
                if attempt == RETRIES or not isinstance(exc, RECONNECT):
                    raise self._unavailable(exc) from None
        raise AssertionError("unreachable")

    async def write(self, step: Callable[[Tx], Awaitable[T]]) -> T:
        for attempt in range(1, RETRIES + 1):
            committing = False
            try:
                async with self._acquire() as conn:
                    # (a step that raises leaves its transaction to the pool's reset: ROLLBACK)
                    await conn.execute("BEGIN")
                    tx = PgTx(conn)
                    result = await step(tx)
                    committing = True
                    await conn.execute(commit(tx.notices))
                return result
            except RETRIED:
                if attempt == RETRIES:
                    raise
            except LOST as exc:
                # Lost before COMMIT: the server rolled the step back, so it may run again.
                # Lost during COMMIT: it may or may not have committed; the caller is told it
                # failed (and nobody has been acknowledged).
                if committing or attempt == RETRIES or not isinstance(exc, RECONNECT):
                    raise self._unavailable(exc) from None
        raise AssertionError("unreachable")

    async def fold_counts(self) -> None:
        """Move the changes of the counts into their totals, unless another master is."""

        async def fold(tx: Tx) -> None:
            row = await tx.one(ddl.TRY_COUNTS_LOCK, ddl.COUNTS_LOCK)
            if row is not None and row[0]:
                await tx.run(ddl.FOLD_COUNTS)

        await self.write(fold)

    async def ping(self) -> None:
        await self.read(lambda tx: tx.one("SELECT 1"))

    async def notify(self, notice: Notice) -> None:
        async def send(tx: Tx) -> None:
            await tx.notify(str(notice))

        await self.write(send)

    async def listen(self, handler: Callable[[Notice], None]) -> None:
        """LISTEN on a connection of its own; after losing it, listen again and tell `handler`
        to resync (notices sent meanwhile are gone)."""
        connected = asyncio.Event()
        self._listening = asyncio.create_task(self._listen(handler, connected), name="listen")
        await connected.wait()

    async def _listen(self, handler: Callable[[Notice], None], connected: asyncio.Event) -> None:
        def heard(conn: object, pid: int, channel: str, payload: object) -> None:
            notice = Notice.parse(str(payload))
            if notice is not None:
                handler(notice)

        missed = False  # notices may have been sent while we were not listening
        while True:
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._url, timeout=self._timeout_s)
                conn.add_termination_listener(functools.partial(_set, lost))
                await conn.add_listener(ddl.CHANNEL, heard)
                if missed:
                    log.info("listening for other masters again")
                    handler(Notice("", NoticeKind.RESYNC))
                missed = False
                connected.set()
                while not lost.is_set() and not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1):  # a dead peer may not close the socket
                            await lost.wait()
                    if not lost.is_set():
                        await conn.execute("SELECT 1", timeout=self._timeout_s)
                missed = True
                log.warning("lost the connection listening for other masters; reconnecting")
            except (*LOST, asyncpg.exceptions.PostgresError) as exc:
                missed = True
                connected.set()  # run anyway; the API reports the store as unavailable
                log.warning("lost the connection listening for other masters: %r", exc)
            finally:
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(LISTEN_RETRY_S)
