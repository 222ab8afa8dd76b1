"""The worker's side of its spawner (gridrun.worker.spawner): launch requests out, processes
(pid, output pipes, pidfd) and their exits back, on the worker's event loop.

The spawner is a child process the worker cannot do without, so it is watched: if it ends
(killed, or a bug), the next request starts another one. The attempts it had started go on
running: the worker is a child subreaper, so they become its children, and it reaps each one
itself when its pidfd says it has exited (their exit status is as exact as before). A launch
the dead spawner had not answered may or may not have forked: where the attempt's groups were
joined for its birth (v1) and are still empty, nothing of it runs and it is asked of the new
spawner; otherwise whatever of it runs is killed by its box and it fails to spawn (with why).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridrun.worker import spawner
from gridrun.worker.policy import Launch
from gridrun.worker.proctree import PR_SET_CHILD_SUBREAPER, prctl, reap_orphans

log = logging.getLogger("gridrun.worker")

ADOPT_WAIT_S = 2.0  # a dead spawner's children are re-parented to us within this
SOCKET_BUFFER = spawner.MAX_MESSAGE


class SpawnError(OSError):
    """The process could not be started; str() says why, as exec would have."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an attempt's first process must be, from its birth (gridrun.worker.containment)."""

    join: tuple[str, ...] = ()  # v1 `tasks` files: the spawner forks from inside them
    # the v2 group: the child is born in it (clone3 CLONE_INTO_CGROUP), or where the kernel
    # or a seccomp filter refuses clone3, writes itself into it before exec
    into: str | None = None


@dataclass(frozen=True, slots=True)
class Exit:
    code: int | None  # the exit code, or minus the signal that killed it; None: not known
    cpu_s: float | None  # its CPU and that of the children it waited for


@dataclass
class Process:
    """A started process: its output pipes are the caller's to read and close."""

    pid: int
    stdout: int
    stderr: int
    exited: asyncio.Future[Exit]
    pidfd: int = field(repr=False, default=-1)
    # it wrote itself into its v2 group before exec (the kernel refused to clone it there)
    moved: bool = False


@dataclass
class _Pending:
    launch: Launch
    placement: Placement
    started: asyncio.Future[Process]
    populated: Callable[[], bool] | None  # the attempt's box holds something
    retried: bool = False


class Spawner:
    """The worker's spawner process, started on the first launch and again if it dies."""

    def __init__(self, home: Sequence[Path] = ()) -> None:
        self._home = [str(p) for p in home]  # v1 `tasks` files of the worker's own groups
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = 0
        self._pending: dict[int, _Pending] = {}  # launches not answered yet
        self._running: dict[int, Process] = {}  # by request id, until their exit is known
        self._adopted: dict[int, Process] = {}  # by pid: a dead spawner's, reaped by us
        self.restarts = 0
        self.subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the spawner process (if it is not running)."""
        if self._proc is not None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for sock in (ours, theirs):
            with contextlib.suppress(OSError):  # (root may have more than wmem_max)
                sock.setsockopt(socket.SOL_SOCKET, 32, SOCKET_BUFFER)  # SO_SNDBUFFORCE
                sock.setsockopt(socket.SOL_SOCKET, 33, SOCKET_BUFFER)  # SO_RCVBUFFORCE
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", spawner.__file__, str(theirs.fileno()),
                 str(os.getpid()), *self._home],
                pass_fds=[theirs.fileno()],
                env={},  # nothing of the worker's environment (its secrets) is in its /proc
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        if self._loop is not None:
            self._loop.add_reader(ours.fileno(), self._readable)

    def spawn(
        self,
        launch: Launch,
        placement: Placement,
        populated: Callable[[], bool] | None = None,
    ) -> asyncio.Future[Process]:
        """Ask for a process; the future has it, or a SpawnError."""
        loop = asyncio.get_running_loop()
        started: asyncio.Future[Process] = loop.create_future()
        self._ids += 1
        pending = _Pending(launch, placement, started, populated)
        self._pending[self._ids] = pending
        try:
            self._attach(loop)
            self._send(self._ids, pending)
        except OSError as exc:
            self._pending.pop(self._ids, None)
            started.set_exception(SpawnError(exc.errno or 0, f"the worker's spawner: {exc}"))
        return started

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.start()
        if self._loop is None:
            self._loop = loop
            assert self._sock is not None
            loop.add_reader(self._sock.fileno(), self._readable)

    def _send(self, number: int, pending: _Pending) -> None:
        request, placement = pending.launch, pending.placement
        message = {
            "id": number,
            "argv": list(request.argv),
            "exe": request.executable,
            "env": request.env,
            "cwd": request.cwd,
            "ids": list(request.ids) if request.ids is not None else None,
            "rlimits": [list(r) for r in request.rlimits],
            "join": list(placement.join),
            "into": placement.into,
        }
        fds = [request.namespace] if request.namespace is not None else []
        message["ns"] = request.namespace is not None
        message["stdin"] = request.stdin is not None
        message["script"] = request.script is not None
        held = [_holding(data) for data in (request.stdin, request.script) if data is not None]
        fds += held  # (in this order: the spawner reads the flags to know which is which)
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        assert self._sock is not None
        data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "surrogateescape"
        )
        try:
            self._sock.sendmsg([data], ancillary)
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                raise OSError(exc.errno, f"the command and its environment are too large"
                              f" ({len(data)} bytes)") from None  # fmt: skip
            raise
        finally:
            for fd in held:
                os.close(fd)  # (the spawner holds its own copy now, the child one more)

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data, ancillary, _, _ = self._sock.recvmsg(
                    65536, socket.CMSG_SPACE(3 * 4), socket.MSG_CMSG_CLOEXEC
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, ancillary = b"", []
            fds = array.array("i")
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            if not data:
                self._died()
                return
            self._answer(json.loads(data.decode("utf-8", "surrogateescape")), list(fds))

    def _answer(self, message: dict[str, Any], fds: list[int]) -> None:
        if "exit" in message:
            process = self._running.pop(message["exit"], None)
            if process is not None:
                code = os.waitstatus_to_exitcode(message["status"])
                self._exited(process, Exit(code, message["cpu"]))
            return
        pending = self._pending.pop(message["id"], None)
        if pending is None:  # (cannot happen: every answer is to a request of ours)
            for fd in fds:
                os.close(fd)
            return
        if "pid" in message:
            out, err, pidfd = fds
            assert self._loop is not None
            exited: asyncio.Future[Exit] = self._loop.create_future()
            process = Process(message["pid"], out, err, exited, pidfd, message["moved"])
            self._running[message["id"]] = process
            pending.started.set_result(process)
            return
        pending.started.set_exception(SpawnError(message["errno"], _why(pending, message)))

    def _exited(self, process: Process, exit: Exit) -> None:
        if process.pidfd >= 0:
            os.close(process.pidfd)
            process.pidfd = -1
        if not process.exited.done():
            process.exited.set_result(exit)

    def _died(self) -> None:
        """The spawner has gone: adopt what it started, start another, and ask it again for
        what is safe to ask again."""
        old = self._let_go()
        log.warning("the worker's spawner (pid %d) ended (%s); starting another",
                    old.pid, old.returncode)  # fmt: skip
        self.restarts += 1
        pending, self._pending = self._pending, {}
        try:
            self.start()
        except OSError as exc:
            log.error("cannot start the worker's spawner again: %s", exc)
        for number, ask in pending.items():
            safe = ask.placement.join and ask.populated is not None and not ask.populated()
            if safe and not ask.retried and self._proc is not None:
                ask.retried = True
                self._pending[number] = ask
                try:
                    self._send(number, ask)
                    continue
                except OSError:
                    self._pending.pop(number, None)
            ask.started.set_exception(SpawnError(0, "the worker's spawner ended while starting it"))

    def _let_go(self) -> subprocess.Popen[bytes]:
        """Close our end, wait for the spawner's exit, and adopt what it started (re-parented
        to us by then)."""
        assert self._sock is not None
        assert self._proc is not None
        if self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        old, self._proc = self._proc, None
        try:
            old.wait(timeout=ADOPT_WAIT_S)  # at its end its children are ours
        except subprocess.TimeoutExpired:
            old.kill()
            old.wait()
        for process in self._running.values():
            self._adopt(process)
        self._running.clear()
        return old

    def _adopt(self, process: Process) -> None:
        """A dead spawner's child is ours now (we are a subreaper): reap it when it exits."""
        assert self._loop is not None
        self._adopted[process.pid] = process
        loop = self._loop
        deadline = loop.time()

        def ready() -> None:  # its pidfd says it has exited
            nonlocal deadline
            loop.remove_reader(process.pidfd)
            deadline = loop.time() + ADOPT_WAIT_S
            reap()

        def reap() -> None:
            try:
                pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
            except ChildProcessError:  # not re-parented yet, or reaped by the dead spawner
                if loop.time() < deadline:
                    loop.call_later(0.01, reap)
                else:
                    done(Exit(None, None))
                return
            if pid == 0:  # (ours, and not ended after all)
                loop.add_reader(process.pidfd, ready)
                return
            done(Exit(os.waitstatus_to_exitcode(status), rusage.ru_utime + rusage.ru_stime))

        def done(exit: Exit) -> None:
            self._adopted.pop(process.pid, None)
            self._exited(process, exit)
            # what its tasks left behind came to us too: reap those that have ended
            reap_orphans({p.pid for p in self._adopted.values()})

        loop.add_reader(process.pidfd, ready)

    def close(self) -> None:
        """The worker is stopping: the spawner exits (on the end of its socket); what still
        runs is reaped by the worker from now on."""
        if self._proc is None:
            return
        self._let_go()
        pending, self._pending = self._pending, {}
        for ask in pending.values():
            ask.started.set_exception(SpawnError(0, "the worker is stopping"))


def _why(pending: _Pending, message: dict[str, Any]) -> str:
    """Why a process did not start, in the words the worker reported before the spawner
    (an exec's error on the program, a chdir's on the directory)."""
    request, what, detail = pending.launch, message["what"], message["detail"]
    number = message["errno"]
    reason = os.strerror(number) if number else detail
    if what == "cgroup":
        return f"cannot put the task in its cgroup: {detail}"
    if what == "chdir":
        return f"cannot run {request.cwd!r}: {reason}"
    target = request.executable or request.argv[0]
    if what == "exec":
        return f"cannot run {target!r}: {reason}"
    return f"cannot run {target!r}: cannot set its {what}: {reason}"


def _holding(data: bytes) -> int:
    """A descriptor of an anonymous file (memfd) holding `data`, read from its start: the
    child's stdin, or its script. A file, not a pipe: the worker never has to write while the
    task runs, and a task that reads nothing blocks nobody."""
    fd = os.memfd_create("gridrun-stdin", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
