"""Files that travel with tasks, on the master (see gridrun.files): taking an input's upload
(streamed into the store chunk by chunk, its sha256 checked, at most --max-input), giving a
task's inputs their stored sizes at submit (a task's inputs together at most --max-input: 413),
handing a worker the bytes of its attempt's inputs and taking the files it collected, and
reading those back, whole or a range.

A worker proves it holds an attempt with the files ticket of its Assign: the attempt and the
worker sealed with the master's key (so any master of the database can check it, after a
restart too), good only while the store says that worker holds that attempt."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from gridrun.clock import Clock
from gridrun.errors import (
    FileNotFound,
    Forbidden,
    InputNotUploaded,
    InsufficientStorage,
    InvalidSpec,
    PayloadTooLarge,
    TaskNotFound,
)
from gridrun.files import (
    CHUNK_BYTES,
    DIGEST,
    FileState,
    TaskFile,
    check_path,
    chunk_range,
    file_blob,
    input_blob,
)
from gridrun.master.core.config import ServiceConfig
from gridrun.master.core.sealing import Sealer
from gridrun.model import ACTIVE, AttemptRef, Task, TaskSpec
from gridrun.store import Store
from gridrun.store.files import input_key

WRITE_CHUNKS = 4  # chunks written per transaction (4 MiB): a short write, few of them
# room kept free on the database's disk beyond a write of files: a file that would take it is
# refused (507) before SQLite fills the disk (its log would then keep the room: see
# SqliteDb.check_writable), so tasks' reports and submissions still have room
RESERVE_BYTES = 32 << 20


class Chunker:
    """Bytes in pieces of any size -> chunks of CHUNK_BYTES, written to the store a few at a
    time, hashed and counted as they pass (the last chunk may be short). One write is in
    flight while the next chunks arrive (the network and the disk at work together); `end`
    or `close` waits for it."""

    def __init__(self, store: Store, blob: str, limit: int | None = None) -> None:
        self._store, self._blob, self._limit = store, blob, limit
        self._buffer = bytearray()
        self._ready: list[bytes] = []
        self._next = 0  # the next chunk's number
        self._writing: asyncio.Task[None] | None = None
        self.size = 0
        self.sha256 = hashlib.sha256()

    async def add(self, data: bytes) -> None:
        self.size += len(data)
        if self._limit is not None and self.size > self._limit:
            raise PayloadTooLarge(f"over {self._limit:,} bytes")
        self.sha256.update(data)
        self._buffer += data
        while len(self._buffer) >= CHUNK_BYTES:
            with memoryview(self._buffer) as view:
                self._ready.append(bytes(view[:CHUNK_BYTES]))
            del self._buffer[:CHUNK_BYTES]
        if len(self._ready) >= WRITE_CHUNKS:
            await self._write()

    async def end(self) -> str:
        """Write what is left; the sha256 (hex) of all of it, once every chunk is stored."""
        if self._buffer:
            self._ready.append(bytes(self._buffer))
            self._buffer.clear()
        await self._write()
        await self._settle()
        return self.sha256.hexdigest()

    async def close(self) -> None:
        """Wait out the write in flight, whatever it ends with (before undoing the chunks)."""
        with contextlib.suppress(Exception):
            await self._settle()

    async def _settle(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing

    async def _write(self) -> None:
        if not self._ready:
            return
        await self._settle()  # (the one before: an error of its is raised here)
        free = self._store.retention.disk_free()
        needed = sum(map(len, self._ready)) * 2 + RESERVE_BYTES
        if free is not None and free < needed:
            raise InsufficientStorage(
                f"the master's disk is full: {free >> 20} MiB free, and a file is kept"
                f" only while {RESERVE_BYTES >> 20} MiB stay free beside it"
            )
        batch, first = self._ready, self._next
        self._next += len(batch)
        self._ready = []
        self._writing = asyncio.create_task(self._store.files.put_chunks(self._blob, first, batch))


class Files:
    def __init__(self, store: Store, clock: Clock, config: ServiceConfig, sealer: Sealer) -> None:
        self.store, self.clock, self.config, self.sealer = store, clock, config, sealer

    # inputs

    async def upload(self, owner: str, digest: str, body: AsyncIterator[bytes]) -> tuple[int, bool]:
        """Store an input's bytes as `owner`'s; (its size, whether it was held already)."""
        if not DIGEST.fullmatch(digest):
            raise InvalidSpec("an input is named by its sha256: 64 lowercase hex digits")
        limit = self.config.max_input
        if await self.store.files.begin_input(owner, digest, self.clock.now_ms()):
            sizes = await self.store.files.input_sizes(owner, [digest])
            return sizes[digest], True
        chunker = Chunker(self.store, input_blob(input_key(owner, digest)), limit)
        try:
            try:
                async for piece in body:
                    await chunker.add(piece)
            except PayloadTooLarge:
                raise PayloadTooLarge(
                    f"an input may be at most {limit:,} bytes (the master's --max-input)"
                ) from None
            got = await chunker.end()
            if got != digest:
                raise InvalidSpec(
                    f"the bytes sent have sha256 {got}, not {digest}: the upload is not kept"
                )
            await self.store.files.finish_input(owner, digest, chunker.size)
        except BaseException:
            await chunker.close()
            await self._abandon(owner, digest)
            raise
        return chunker.size, False

    async def _abandon(self, owner: str, digest: str) -> None:
        """An upload that will not end: the room it took back at once; what is left is for
        gc."""
        await self._give_back(lambda: self.store.files.abandon_input(owner, digest))

    async def _give_back(self, delete: Callable[[], Awaitable[None]]) -> None:
        """Delete bytes that will not be kept and take their room back now, each step tried
        on its own: the log first (on a full disk the delete needs room), the delete, then
        the freed pages."""
        for step in (self.store.retention.shrink_log, delete, self.store.retention.reclaim):
            with contextlib.suppress(Exception):
                await step()

    async def held(self, owner: str, digest: str) -> int | None:
        """The size of `owner`'s input of that sha256, if it is held whole."""
        return (await self.store.files.input_sizes(owner, [digest])).get(digest)

    async def resolve(self, specs: Sequence[TaskSpec]) -> list[TaskSpec]:
        """The specs with their inputs' sizes as stored (InputNotUploaded for an input not
        uploaded by the task's owner; 413 for a task whose inputs are over --max-input)."""
        wanted: dict[str, set[str]] = {}
        for spec in specs:
            wanted.setdefault(spec.owner, set()).update(f.digest for f in spec.inputs)
        sizes = {
            owner: await self.store.files.input_sizes(owner, sorted(digests))
            for owner, digests in wanted.items()
            if digests
        }
        limit = self.config.max_input
        resolved = []
        for spec in specs:
            if not spec.inputs:
                resolved.append(spec)
                continue
            held = sizes[spec.owner]
            for f in spec.inputs:
                if f.digest not in held:
                    raise InputNotUploaded(
                        f"input {f.name!r} (sha256 {f.digest}) is not uploaded: PUT its bytes"
                        f" to /v1/inputs/{f.digest} first"
                    )
            inputs = tuple(dataclasses.replace(f, size=held[f.digest]) for f in spec.inputs)
            total = sum(f.size for f in inputs)
            if total > limit:
                raise PayloadTooLarge(
                    f"the task's inputs are {total:,} bytes; a task's inputs may be at most"
                    f" {limit:,} (the master's --max-input)"
                )
            resolved.append(dataclasses.replace(spec, inputs=inputs))
        return resolved

    # a worker's side

    async def holder(self, ticket: str, ref: AttemptRef) -> Task:
        """The task whose attempt `ref` the ticket's worker holds now (Forbidden if the
        ticket is not this attempt's, or the worker holds it no longer)."""
        named = self.sealer.ticket_holder(ticket)
        if named is None or named[0] != ref:
            raise Forbidden("the files ticket is not this attempt's")
        try:
            task = await self.store.tasks.get_task(ref.task_id)
        except TaskNotFound:
            raise Forbidden("the attempt's task is gone") from None
        if task.state not in ACTIVE or not task.held_by(ref, named[1]):
            raise Forbidden("the worker does not hold this attempt (any more)")
        return task

    async def fetch(
        self, ticket: str, ref: AttemptRef, digest: str, offset: int
    ) -> AsyncIterator[bytes]:
        """The bytes of one of the attempt's inputs, from `offset`, a chunk at a time."""
        task = await self.holder(ticket, ref)
        item = next((f for f in task.spec.inputs if f.digest == digest), None)
        if item is None:
            raise Forbidden("that input is not one of this attempt's")
        return self._read(
            input_blob(input_key(task.spec.owner, digest)), item.size, offset, item.size
        )

    async def receive(
        self,
        ticket: str,
        ref: AttemptRef,
        path: str,
        size: int,
        mode: int,
        data: AsyncIterator[bytes],
        sent_digest: Callable[[], str],
    ) -> tuple[int, str]:
        """Take one collected file (marked incomplete until its last byte is stored and its
        sha256 matched `sent_digest()`, the worker's, once `data` has ended); its (size,
        sha256). Raises if the worker does not hold the attempt, or the path is bad; a file
        that cannot be kept (the disk full, over the budget, other bytes than the worker's)
        is dropped, saying why, its bytes removed at once."""
        await self.holder(ticket, ref)
        check_path(path, "a collected file's path")
        used = await self.store.files.attempt_bytes(ref, path)  # (one sum, not every row)
        budget = max(0, self.config.max_collect - used)  # (the worker keeps to it: a check)
        await self.store.files.begin_file(ref, path, size, mode & 0o777, self.clock.now_ms())
        chunker = Chunker(self.store, file_blob(ref.task_id, ref.attempt, path), budget)
        try:
            try:
                async for piece in data:
                    await chunker.add(piece)
            except PayloadTooLarge:
                raise PayloadTooLarge(
                    f"over the collect budget ({budget:,} bytes left of the attempt's"
                    f" {self.config.max_collect:,}: the master's --max-collect)"
                ) from None
            digest = await chunker.end()
            if sent_digest() != digest:
                raise InvalidSpec(
                    f"the bytes stored have sha256 {digest}, the worker sent"
                    f" {sent_digest() or 'none'}"
                )
        except (InsufficientStorage, PayloadTooLarge, InvalidSpec) as exc:
            await chunker.close()
            await self._drop(ref, path, size, f"not kept: {exc.message}")
            raise
        except BaseException:
            await chunker.close()  # (left incomplete: the worker sends it again)
            raise
        await self.store.files.finish_file(
            ref, path, chunker.size, digest, mode & 0o777, self.clock.now_ms()
        )
        return chunker.size, digest

    async def _drop(self, ref: AttemptRef, path: str, size: int, why: str) -> None:
        """A collected file that will not be kept: listed dropped, why; its room back now."""
        now = self.clock.now_ms()
        await self._give_back(lambda: self.store.files.drop_file(ref, path, size, why[:500], now))

    async def dropped(
        self, ticket: str, ref: AttemptRef, path: str, size: int, reason: str
    ) -> None:
        await self.holder(ticket, ref)
        check_path(path, "a collected file's path")
        await self.store.files.drop_file(ref, path, size, reason[:500], self.clock.now_ms())

    # reading

    async def list(self, task_id: str) -> list[TaskFile]:
        """A task's collected files (TaskNotFound for no such task, not an empty list)."""
        await self.store.tasks.get_task(task_id)
        return await self.store.files.files(task_id)

    async def find(self, task_id: str, path: str, attempt: int | None = None) -> TaskFile:
        """The file of that path: of `attempt`, else of the latest attempt that has it."""
        found = [
            f
            for f in await self.list(task_id)
            if f.path == path and (attempt is None or f.attempt == attempt)
        ]
        if not found:
            where = f" in attempt {attempt}" if attempt is not None else ""
            raise FileNotFound(f"task {task_id} has no collected file {path!r}{where}")
        return found[-1]

    def read(self, file: TaskFile, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes start..end-1 of a complete file, a chunk at a time."""
        if file.state is not FileState.COMPLETE:
            raise FileNotFound(f"{file.path!r} is {file.state}: {file.reason or 'no bytes kept'}")
        return self._read(file_blob(file.task_id, file.attempt, file.path), file.size, start, end)

    async def _read(self, blob: str, size: int, start: int, end: int) -> AsyncIterator[bytes]:
        for seq in chunk_range(size, start, end):
            data = await self.store.files.chunk(blob, seq)
            first = seq * CHUNK_BYTES
            yield data[max(0, start - first) : max(0, min(end, size) - first)]

    async def collect_unused(self) -> int:
        """Delete inputs no task uses any more (retention's pass calls it)."""
        return await self.store.files.unused_inputs(self.clock.now_ms())
