"""A task's files on the worker (see gridrun.files): writing an attempt's inputs into its fresh
working directory before it starts, and sending back what its collect globs match once it has
ended (all its processes gone: its box is emptied first), over the master connection's `Fetch`
and `Collect` calls, each with the attempt's files ticket.

What is collected stays inside the working directory: every directory on the way is opened
without following a symlink, a symlink is not followed (it is listed as dropped, with why), a
file that is not the task's own (another uid's, where the task ran as its own) is not read,
and no more than the budget is sent. A call the master does not answer is tried again (a
master that restarts mid-upload gets the whole file again); after RETRY_S the file is left
out, and the attempt's error says which.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import stat
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from gridrun import transport
from gridrun._proto import worker_pb2 as pb
from gridrun._proto import worker_pb2_grpc
from gridrun.errors import InvalidSpec
from gridrun.files import MAX_FILES, check_path, matches, sha256_of
from gridrun.model import AttemptRef

log = logging.getLogger("gridrun.worker")

PIECE = 256 * 1024  # bytes per message of a file's upload
RETRY_S = 120.0  # how long a file's transfer is tried again while the master is away
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class StageError(Exception):
    """An input could not be written (`transient`: the master was away; nothing ran)."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True, slots=True)
class Found:
    """A path a glob matched, and whether (and why not) it can be sent."""

    path: str
    size: int
    why_not: str = ""


class Transfers:
    def __init__(
        self,
        stub: Callable[[], worker_pb2_grpc.WorkerServiceStub | None],
        connected: asyncio.Event,
        join_token: str | None,
    ) -> None:
        self._stub, self._connected = stub, connected
        self._metadata = (
            ((transport.JOIN_TOKEN_KEY, f"Bearer {join_token}"),) if join_token else None
        )

    async def _call_stub(self, deadline: float) -> worker_pb2_grpc.WorkerServiceStub:
        loop = asyncio.get_running_loop()
        while True:
            stub = self._stub()
            if stub is not None and self._connected.is_set():
                return stub
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("the master could not be reached")
            try:
                async with asyncio.timeout(min(left, 1.0)):
                    await self._connected.wait()
            except TimeoutError:
                continue

    # inputs

    async def stage(
        self, ticket: str, ref: AttemptRef, inputs: Sequence[pb.InputRef], workdir: Path,
        ids: tuple[int, int] | None,
    ) -> None:  # fmt: skip
        """Write each input into `workdir` (its mode kept; owned by `ids` if given). Raises
        StageError with what went wrong."""
        for item in inputs:
            try:
                check_path(item.name, "an input's name")
            except InvalidSpec as exc:
                raise StageError(exc.message) from None
            target = workdir / item.name
            try:
                self._make_parents(workdir, item.name, ids)
                await self._fetch_to(ticket, ref, item, target)
                os.chmod(target, item.mode & 0o777)
                if ids is not None:
                    os.chown(target, *ids)
            except OSError as exc:
                target.unlink(missing_ok=True)  # (the room it took: the result needs some)
                what = "the worker's disk is full" if exc.errno == errno.ENOSPC else exc.strerror
                raise StageError(f"input {item.name!r} could not be written: {what}") from None
            except StageError:
                target.unlink(missing_ok=True)
                raise

    @staticmethod
    def _make_parents(workdir: Path, name: str, ids: tuple[int, int] | None) -> None:
        parent = workdir
        for part in name.split("/")[:-1]:
            parent = parent / part
            if not parent.is_dir():
                parent.mkdir(mode=0o755)
                if ids is not None:
                    os.chown(parent, *ids)

    async def _fetch_to(
        self, ticket: str, ref: AttemptRef, item: pb.InputRef, target: Path
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_S
        with open(target, "wb") as out:  # noqa: ASYNC230 (256 KiB writes to a local disk)
            while True:  # (a call cut short goes on from where it stopped)
                try:
                    stub = await self._call_stub(deadline)
                    request = pb.FetchRequest(
                        ticket=ticket, ref=pb.AttemptRef(task_id=ref.task_id, attempt=ref.attempt),
                        digest=item.digest, offset=out.tell(),
                    )  # fmt: skip
                    async for chunk in stub.Fetch(request, metadata=self._metadata):
                        out.write(chunk.data)
                    break
                except TimeoutError as exc:
                    raise StageError(f"input {item.name!r}: {exc}", transient=True) from None
                except grpc.aio.AioRpcError as exc:
                    if exc.code() not in TRANSIENT or loop.time() > deadline:
                        raise StageError(
                            f"input {item.name!r}: the master refused it: {exc.details()}",
                            transient=exc.code() in TRANSIENT,
                        ) from None
                    await asyncio.sleep(0.5)
            size = out.tell()
        if size != item.size:
            raise StageError(f"input {item.name!r}: {size} bytes came, not {item.size}")
        if await asyncio.to_thread(sha256_of, target) != item.digest:
            raise StageError(f"input {item.name!r}: its bytes do not have the sha256 it names")

    # collected files

    def find(self, workdir: Path, globs: Sequence[str], uid: int | None) -> tuple[list[Found], int]:
        """The files under `workdir` the globs match, in order (at most MAX_FILES; the
        number matched beyond), each with why it cannot be sent, if it cannot."""
        found: list[Found] = []
        beyond = 0
        for top, dirs, names, top_fd in os.fwalk(workdir, follow_symlinks=False):
            rel = os.path.relpath(top, workdir)
            dirs.sort()
            for name in sorted(names + [d for d in dirs if _is_link(top_fd, d)]):
                path = name if rel == "." else f"{rel}/{name}"
                if not matches(path, globs):
                    continue
                if len(found) >= MAX_FILES:
                    beyond += 1
                    continue
                found.append(_judge(top_fd, name, path, uid))
        return found, beyond

    async def collect(
        self, ticket: str, ref: AttemptRef, workdir: Path, globs: Sequence[str], budget: int,
        uid: int | None,
    ) -> str:  # fmt: skip
        """Send what the globs match; "" or what went wrong (for the attempt's error)."""
        try:
            found, beyond = await asyncio.to_thread(self.find, workdir, globs, uid)
        except OSError as exc:
            return f"files not collected: {exc.strerror}"
        problems = []
        if beyond:
            problems.append(f"{beyond} more files matched than the {MAX_FILES} collected")
        used = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_S
        for item in found:
            why_not = item.why_not
            if not why_not and used + item.size > budget:
                why_not = f"over the collect budget ({budget:,} bytes per attempt)"
            try:
                if why_not:
                    await self._send_dropped(ticket, ref, item, why_not, deadline)
                    continue
                used += item.size
                await self._send_file(ticket, ref, workdir, item, deadline)
            except (TimeoutError, grpc.aio.AioRpcError, OSError) as exc:
                problems.append(f"{item.path}: {_said(exc)}")
                log.warning(
                    "task %s attempt %d: file %s not collected: %s",
                    ref.task_id, ref.attempt, item.path, _said(exc),
                )  # fmt: skip
        return f"files not collected: {'; '.join(problems)}" if problems else ""

    async def _send_dropped(
        self, ticket: str, ref: AttemptRef, item: Found, why: str, deadline: float
    ) -> None:
        head = self._head(ticket, ref, item.path, item.size, 0, why)

        async def messages() -> AsyncIterator[pb.CollectMessage]:
            yield pb.CollectMessage(head=head)

        await self._retrying(messages, deadline)

    async def _send_file(
        self, ticket: str, ref: AttemptRef, workdir: Path, item: Found, deadline: float
    ) -> None:
        async def messages() -> AsyncIterator[pb.CollectMessage]:
            fd = _open_beneath(workdir, item.path)
            try:
                info = os.fstat(fd)
                yield pb.CollectMessage(
                    head=self._head(ticket, ref, item.path, info.st_size, info.st_mode, "")
                )
                sha = hashlib.sha256()
                while data := await asyncio.to_thread(os.read, fd, PIECE):
                    sha.update(data)
                    yield pb.CollectMessage(data=data)
                yield pb.CollectMessage(end=pb.CollectEnd(digest=sha.hexdigest()))
            finally:
                os.close(fd)

        await self._retrying(messages, deadline)

    async def _retrying(
        self, messages: Callable[[], AsyncIterator[pb.CollectMessage]], deadline: float
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            stub = await self._call_stub(deadline)
            try:
                await stub.Collect(messages(), metadata=self._metadata)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in TRANSIENT or loop.time() > deadline:
                    raise
                await asyncio.sleep(0.5)  # the master is away: the whole file again, later

    @staticmethod
    def _head(
        ticket: str, ref: AttemptRef, path: str, size: int, mode: int, dropped: str
    ) -> pb.CollectHead:
        return pb.CollectHead(
            ticket=ticket, ref=pb.AttemptRef(task_id=ref.task_id, attempt=ref.attempt),
            path=path, size=size, mode=stat.S_IMODE(mode) or 0o644, dropped=bool(dropped),
            reason=dropped,
        )  # fmt: skip


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _judge(dir_fd: int, name: str, path: str, uid: int | None) -> Found:
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        return Found(path, 0, f"cannot be read: {exc.strerror}")
    if stat.S_ISLNK(info.st_mode):
        return Found(path, 0, "a symlink (not followed)")
    if not stat.S_ISREG(info.st_mode):
        return Found(path, 0, "not a regular file")
    if uid is not None and info.st_uid != uid:
        return Found(path, info.st_size, "not the task's own file (another user's)")
    return Found(path, info.st_size)


def _open_beneath(root: Path, path: str) -> int:
    """A file under `root` opened for reading, no symlink followed on the way (a directory
    swapped for a link fails with ELOOP or ENOTDIR, never leaves the tree)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        *dirs, name = path.split("/")
        for part in dirs:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        found = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(found).st_mode):
        os.close(found)
        raise OSError(errno.EINVAL, "not a regular file")
    return found


def _said(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"the master refused it: {exc.details()}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
