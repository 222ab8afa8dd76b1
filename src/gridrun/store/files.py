"""The store's file verbs (`store.files`, one object over the backend): uploaded inputs (one
row per sha256, whatever number of tasks use it, and `task_inputs` saying which do), the files
collected from each attempt, and the bytes of both in chunks (gridrun.files.CHUNK_BYTES). A
caller streams: it writes or reads a few chunks per transaction, never a whole file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gridrun.errors import InputNotUploaded
from gridrun.files import FileState, TaskFile, file_blob, input_blob
from gridrun.model import AttemptRef
from gridrun.store import queries as sql
from gridrun.store.relational_tx import Db, Tx, marks

UPLOAD_GRACE_MS = 3600_000  # an input no task uses yet is kept this long after its upload


def _file(row: Sequence[Any]) -> TaskFile:
    return TaskFile(
        task_id=row[0],
        attempt=int(row[1]),
        path=row[2],
        state=FileState(row[3]),
        size=int(row[4]),
        digest=row[5],
        mode=int(row[6]),
        reason=row[7],
        created_at=int(row[8]),
    )


def input_key(owner: str, digest: str) -> str:
    """An input's key: its owner's and its sha256. Each owner's uploads are their own: one
    owner cannot use (or learn of) another's file by knowing its sha256."""
    return f"{owner}/{digest}"


async def hold_inputs(tx: Tx, uses: Sequence[tuple[str, str, Sequence[str]]]) -> None:
    """Record which tasks use which inputs (`uses`: task id, owner, digests), in the
    transaction that adds them; InputNotUploaded if one is not (completely) uploaded."""
    rows = [(t, input_key(owner, d)) for t, owner, digests in uses for d in digests]
    wanted = sorted({key for _, key in rows})
    if not wanted:
        return
    query = sql.SELECT_INPUTS.format(marks=marks(len(wanted)))
    held = {r[0] for r in await tx.all(query, *wanted)}
    missing = [key for key in wanted if key not in held]
    if missing:
        digest = missing[0].rpartition("/")[2]
        raise InputNotUploaded(
            f"input sha256 {digest} is not uploaded (PUT /v1/inputs/{digest} first)"
        )
    await tx.many(sql.HOLD_INPUT, rows)


class FileVerbs:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def input_sizes(self, owner: str, digests: Sequence[str]) -> dict[str, int]:
        """The size of each of these inputs of `owner`'s that is completely uploaded."""
        wanted = sorted({input_key(owner, d) for d in digests})
        if not wanted:
            return {}

        async def read(tx: Tx) -> dict[str, int]:
            query = sql.SELECT_INPUTS.format(marks=marks(len(wanted)))
            rows = await tx.all(query, *wanted)
            return {r[0].rpartition("/")[2]: int(r[1]) for r in rows}

        return await self._db.read(read)

    async def begin_input(self, owner: str, digest: str, now: int) -> bool:
        """Start an upload of an input; True if it is held whole already (nothing to send).
        An upload that had begun and not ended starts again from nothing."""
        key = input_key(owner, digest)

        async def step(tx: Tx) -> bool:
            row = await tx.one(sql.SELECT_INPUT, key)
            if row is not None and int(row[1]):
                return True
            await tx.run(sql.BEGIN_INPUT, key, now)
            await tx.run(sql.DELETE_CHUNKS, input_blob(key))
            return False

        return await self._db.write(step)

    async def finish_input(self, owner: str, digest: str, size: int) -> None:
        key = input_key(owner, digest)
        await self._db.write(lambda tx: tx.run(sql.FINISH_INPUT, size, key))

    async def abandon_input(self, owner: str, digest: str) -> None:
        """An upload that will not end (refused, cut off): its bytes go now, not at gc."""
        key = input_key(owner, digest)

        async def step(tx: Tx) -> None:
            row = await tx.one(sql.SELECT_INPUT, key)
            if row is not None and not int(row[1]):
                await tx.run(sql.DELETE_CHUNKS, input_blob(key))
                await tx.run(sql.DELETE_INCOMPLETE_INPUT, key)

        await self._db.write(step)

    async def put_chunks(self, blob: str, first: int, chunks: Sequence[bytes]) -> None:
        """Write chunks `first`, `first` + 1, ... of a blob, in one transaction."""
        rows = [(blob, first + i, data) for i, data in enumerate(chunks)]
        await self._db.write(lambda tx: tx.many(sql.PUT_CHUNK, rows))

    async def chunk(self, blob: str, seq: int) -> bytes:
        """One chunk of a blob (b"" past its end)."""

        async def read(tx: Tx) -> bytes:
            row = await tx.one(sql.SELECT_CHUNK, blob, seq)
            return bytes(row[0]) if row is not None else b""

        return await self._db.read(read)

    async def begin_file(self, ref: AttemptRef, path: str, size: int, mode: int, now: int) -> None:
        """A collected file's upload begins: it is incomplete until `finish_file` (a file
        sent again starts from nothing)."""
        row = (ref.task_id, ref.attempt, path, str(FileState.INCOMPLETE), size, "", mode, "", now)

        async def step(tx: Tx) -> None:
            await tx.run(sql.PUT_FILE, *row)
            await tx.run(sql.DELETE_CHUNKS, file_blob(ref.task_id, ref.attempt, path))

        await self._db.write(step)

    async def finish_file(
        self, ref: AttemptRef, path: str, size: int, digest: str, mode: int, now: int
    ) -> None:
        state = str(FileState.COMPLETE)
        row = (ref.task_id, ref.attempt, path, state, size, digest, mode, "", now)
        await self._db.write(lambda tx: tx.run(sql.PUT_FILE, *row))

    async def drop_file(self, ref: AttemptRef, path: str, size: int, reason: str, now: int) -> None:
        """A file the worker did not send, and why (its bytes, if any began, are removed)."""
        row = (ref.task_id, ref.attempt, path, str(FileState.DROPPED), size, "", 0o644, reason, now)

        async def step(tx: Tx) -> None:
            await tx.run(sql.PUT_FILE, *row)
            await tx.run(sql.DELETE_CHUNKS, file_blob(ref.task_id, ref.attempt, path))

        await self._db.write(step)

    async def attempt_bytes(self, ref: AttemptRef, besides: str) -> int:
        """Bytes of the attempt's files kept or on their way, but the file at `besides`."""

        async def read(tx: Tx) -> int:
            row = await tx.one(sql.SELECT_ATTEMPT_FILE_BYTES, ref.task_id, ref.attempt, besides)
            return int(row[0]) if row else 0

        return await self._db.read(read)

    async def files(self, task_id: str) -> list[TaskFile]:
        """A task's collected files, every attempt's, by attempt then path."""

        async def read(tx: Tx) -> list[TaskFile]:
            return [_file(r) for r in await tx.all(sql.SELECT_FILES, task_id)]

        return await self._db.read(read)

    async def unused_inputs(self, now: int, limit: int = 500) -> int:
        """Delete inputs no task uses (uploaded over UPLOAD_GRACE_MS ago), with their bytes."""

        async def step(tx: Tx) -> int:
            rows = await tx.all(sql.SELECT_UNUSED_INPUTS, now - UPLOAD_GRACE_MS, limit)
            digests = [(r[0],) for r in rows]
            await tx.many(sql.DELETE_CHUNKS, [(input_blob(d),) for (d,) in digests])
            await tx.many(sql.DELETE_INPUT, digests)
            return len(digests)

        return await self._db.write(step)

    async def kept(self) -> tuple[int, int, int]:
        """Bytes of collected files kept, bytes of inputs held, and how many inputs."""

        async def read(tx: Tx) -> tuple[int, int, int]:
            files = await tx.one(sql.SELECT_FILE_BYTES)
            inputs = await tx.one(sql.SELECT_INPUT_BYTES)
            return (
                int(files[0]) if files else 0,
                int(inputs[0]) if inputs else 0,
                int(inputs[1]) if inputs else 0,
            )

        return await self._db.read(read)
