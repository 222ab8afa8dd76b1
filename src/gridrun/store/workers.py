"""The store's worker verbs (`store.workers`, one object over the backend): worker rows and their
leases.

The master holding a worker's stream holds its lease (`workers.master`, `lease_until`) and
renews it; any master reads the leases to judge whether a worker is alive.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence

from gridrun.errors import WorkerNotFound
from gridrun.model import AttemptRef, WorkerInfo, WorkerState
from gridrun.store import queries as sql
from gridrun.store.relational_tx import Db, Tx


class WorkerVerbs:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def upsert_worker(self, worker: WorkerInfo, lease_until: int | None) -> None:
        row = (
            worker.id,
            worker.hostname,
            json.dumps(dict(worker.labels)),
            worker.slots,
            str(worker.state),
            worker.version,
            int(worker.legacy),
            worker.connected_at,
            worker.last_seen,
            json.dumps(dict(worker.resources)),
            self._db.origin,
            lease_until,
            worker.containment,
        )

        async def upsert(tx: Tx) -> None:
            await tx.run(sql.UPSERT_WORKER, *row)

        await self._db.write(upsert)

    async def bind_worker(
        self,
        worker_id: str,
        secret_hash: str,
        now: int,
        credential: str = "",
        most: int | None = None,
    ) -> str | None:
        """Bind `worker_id` to `secret_hash` unless it is bound already; the hash it is bound
        to (the caller's when it was free). None: it was free, and `credential` (a join
        token's name) has `most` ids bound already."""

        async def bind(tx: Tx) -> str | None:
            row = await tx.one(sql.SELECT_WORKER_SECRET, worker_id)
            if row is not None:
                return str(row[0])
            if most is not None:
                (bound,) = await tx.one(sql.COUNT_BOUND, credential, most) or (0,)
                if int(bound) >= most:
                    return None
            await tx.run(sql.BIND_WORKER, worker_id, secret_hash, now, credential)
            row = await tx.one(sql.SELECT_WORKER_SECRET, worker_id)
            assert row is not None
            return str(row[0])

        return await self._db.write(bind)

    async def worker_secret(self, worker_id: str) -> str | None:
        """The hash a worker id is bound to, if any."""

        async def read(tx: Tx) -> str | None:
            row = await tx.one(sql.SELECT_WORKER_SECRET, worker_id)
            return None if row is None else str(row[0])

        return await self._db.read(read)

    async def forget_workers(
        self, before: int, keep: Collection[str] = (), unused_before: int | None = None
    ) -> list[str]:
        """Delete the workers no master has heard from since `before` and that hold no
        attempt (except those in `keep`: connected here), with their identity bindings; and
        those that never ran anything, once unheard of since `unused_before`."""

        async def forget(tx: Tx) -> list[str]:
            rows = await tx.all(sql.SELECT_FORGOTTEN, before, before)
            if unused_before is not None:
                rows += await tx.all(sql.SELECT_UNUSED, unused_before, unused_before)
            gone = sorted({str(r[0]) for r in rows} - set(keep))
            for worker_id in gone:
                await tx.run(sql.FORGET_WORKER, worker_id)
                await tx.run(sql.FORGET_SECRET, worker_id)
            return gone

        return await self._db.write(forget)

    async def renew_leases(self, seen: Sequence[tuple[str, int, int]]) -> None:
        """Extend the leases of workers connected to this master: (worker id, last seen,
        lease until)."""
        if not seen:
            return

        async def renew(tx: Tx) -> None:
            rows = [(last, until, w, self._db.origin) for w, last, until in seen]
            await tx.many(sql.RENEW_LEASE, rows)

        await self._db.write(renew)

    async def lapsed(self, now: int) -> set[str]:
        """Workers holding active attempts whose lease has run out (or who never had one)."""

        async def read(tx: Tx) -> set[str]:
            return {r[0] for r in await tx.all(sql.SELECT_LAPSED, now)}

        return await self._db.read(read)

    async def assigned_here(self, before: int) -> list[tuple[AttemptRef, str]]:
        """Attempts assigned before `before`, not started, on workers leased to this master."""

        async def read(tx: Tx) -> list[tuple[AttemptRef, str]]:
            rows = await tx.all(sql.SELECT_ASSIGNED_HERE, before, self._db.origin)
            return [(AttemptRef(r[0], r[1]), r[2]) for r in rows]

        return await self._db.read(read)

    async def worker_master(self, worker_id: str, now: int) -> tuple[WorkerState, str | None]:
        """A worker's state and the master holding its lease (None if nobody holds a live
        one). Raises WorkerNotFound for a worker that never connected."""

        async def read(tx: Tx) -> tuple[WorkerState, str | None]:
            row = await tx.one(sql.SELECT_WORKER_MASTER, worker_id)
            if row is None:
                raise WorkerNotFound(f"no worker with id {worker_id!r}")
            state, master, lease_until = row
            live = state != WorkerState.OFFLINE and lease_until is not None and lease_until >= now
            return WorkerState(state), master if live else None

        return await self._db.read(read)

    async def list_workers(self) -> list[WorkerInfo]:
        async def read(tx: Tx) -> list[WorkerInfo]:
            return [
                WorkerInfo(
                    id=r[0],
                    hostname=r[1],
                    labels=json.loads(r[2]),
                    slots=r[3],
                    state=WorkerState(r[4]),
                    version=r[5],
                    legacy=bool(r[6]),
                    connected_at=r[7],
                    last_seen=r[8],
                    running=r[9],
                    resources=json.loads(r[10]),
                    lease_until=r[11],
                    containment=r[12],
                    assigned=r[13],
                )
                for r in await tx.all(
                    sql.SELECT_WORKERS.format(index=self._db.dialect.use_index("tasks_active"))
                )
            ]

        return await self._db.read(read)
