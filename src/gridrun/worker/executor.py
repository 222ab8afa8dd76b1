"""One running process: spawn it in its own process group, stream its output, enforce its
timeout, and kill the whole group (SIGTERM, grace, SIGKILL) on cancel or timeout.

A task's background processes do not outlive it: when the main process ends, whatever is left
of its process group is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gridrun.model import AttemptRef, Outcome, Report
from gridrun.worker.policy import Launch

READ_SIZE = 64 * 1024
FLUSH_BYTES = 256 * 1024
FLUSH_INTERVAL_S = 0.05
# Started is sent once the process has run this long (or before its first output): most short
# commands end sooner, and their Finished alone says when they started, which saves the master
# a message and a write for each of them.
STARTED_DELAY_S = 0.01
STDOUT, STDERR = 1, 2


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Assignment:
    ref: AttemptRef
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    timeout_s: float | None = None
    kill_grace_s: float = 5.0
    shell: bool = False


@dataclass(frozen=True, slots=True)
class Started:
    ref: AttemptRef
    started_at: int
    pid: int


@dataclass(frozen=True, slots=True)
class OutputChunk:
    ref: AttemptRef
    stream: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Finished:
    ref: AttemptRef
    report: Report
    stdout_bytes: int
    stderr_bytes: int


Event = Started | OutputChunk | Finished


class _Stream:
    """Collects one pipe's bytes between flushes, remembering the stream offset."""

    def __init__(self, ref: AttemptRef, number: int) -> None:
        self.ref = ref
        self.number = number
        self.sent = 0
        self.pending = bytearray()

    def take(self) -> OutputChunk | None:
        if not self.pending:
            return None
        chunk = OutputChunk(self.ref, self.number, self.sent, bytes(self.pending))
        self.sent += len(self.pending)
        self.pending.clear()
        return chunk


class Execution:
    def __init__(
        self, assignment: Assignment, launch: Launch, emit: Callable[[Event], None]
    ) -> None:
        self.assignment = assignment
        self._launch = launch
        self._emit = emit
        self._cancelled = asyncio.Event()
        self._outcome_on_kill = Outcome.CANCELLED
        self._error = ""
        self._streams = {n: _Stream(assignment.ref, n) for n in (STDOUT, STDERR)}
        self.pid: int | None = None
        self.started_at = 0
        self._announce: asyncio.TimerHandle | None = None  # sends Started, unless it ends first

    @property
    def launch(self) -> Launch:
        return self._launch

    @property
    def ref(self) -> AttemptRef:
        return self.assignment.ref

    def cancel(self, reason: str, outcome: Outcome = Outcome.CANCELLED) -> None:
        if not self._cancelled.is_set():
            self._outcome_on_kill = outcome
            self._error = reason
            self._cancelled.set()

    async def run(self) -> Finished:
        """Run the process to its end and return (and emit) how it finished."""
        a = self.assignment
        started_at = now_ms()
        if self._cancelled.is_set():
            return self._finish(Report(self._outcome_on_kill, error=self._error))
        launch = self._launch
        try:
            proc = await asyncio.create_subprocess_exec(
                *launch.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=launch.env,
                cwd=launch.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            detail = exc.strerror or str(exc)
            target = exc.filename or a.argv[0]
            return self._finish(
                Report(
                    Outcome.SPAWN_FAILED,
                    started_at=started_at,
                    finished_at=now_ms(),
                    error=f"cannot run {target!r}: {detail}",
                )
            )
        self.pid = proc.pid
        self.started_at = started_at
        self._announce = asyncio.get_running_loop().call_later(STARTED_DELAY_S, self._started)
        assert proc.stdout is not None
        assert proc.stderr is not None
        readers = [
            asyncio.create_task(self._pump(proc.stdout, self._streams[STDOUT])),
            asyncio.create_task(self._pump(proc.stderr, self._streams[STDERR])),
        ]
        flusher = asyncio.create_task(self._flush_periodically())
        outcome = Outcome.EXITED
        try:
            outcome = await self._wait(proc)
        finally:
            self._kill_group(proc.pid, signal.SIGKILL)  # leftovers of the group, if any
            if proc.returncode is None:
                await proc.wait()
            await asyncio.gather(*readers, return_exceptions=True)
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            self._flush()
        code = proc.returncode
        assert code is not None
        return self._finish(
            Report(
                outcome,
                exit_code=code if code >= 0 else None,
                signal=-code if code < 0 else None,
                started_at=started_at,
                finished_at=now_ms(),
                error=self._error if outcome is not Outcome.EXITED else "",
            )
        )

    async def _wait(self, proc: asyncio.subprocess.Process) -> Outcome:
        exited = asyncio.create_task(proc.wait())
        cancelled = asyncio.create_task(self._cancelled.wait())
        try:
            done, _ = await asyncio.wait(
                {exited, cancelled},
                timeout=self.assignment.timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            cancelled.cancel()
        if exited in done:
            return Outcome.EXITED
        if cancelled in done:
            outcome = self._outcome_on_kill
        else:
            outcome = Outcome.TIMED_OUT
            self._error = f"timed out after {self.assignment.timeout_s:g}s"
        await self._terminate(proc, exited)
        return outcome

    async def _terminate(self, proc: asyncio.subprocess.Process, exited: asyncio.Task[int]) -> None:
        self._kill_group(proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(self.assignment.kill_grace_s):
                await asyncio.shield(exited)
        except TimeoutError:
            self._kill_group(proc.pid, signal.SIGKILL)
            await exited

    @staticmethod
    def _kill_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    async def _pump(self, pipe: asyncio.StreamReader, stream: _Stream) -> None:
        while chunk := await pipe.read(READ_SIZE):
            stream.pending += chunk
            if len(stream.pending) >= FLUSH_BYTES:
                self._flush()

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self._flush()

    def _started(self) -> None:
        """Say the process started (once), before any of its output."""
        if self._announce is None:
            return
        self._announce.cancel()
        self._announce = None
        assert self.pid is not None
        self._emit(Started(self.assignment.ref, self.started_at, self.pid))

    def _flush(self) -> None:
        for stream in self._streams.values():
            if stream.pending:
                self._started()
            chunk = stream.take()
            if chunk is not None:
                self._emit(chunk)

    def _finish(self, report: Report) -> Finished:
        if self._announce is not None:  # it ended before Started was due: Finished says it all
            self._announce.cancel()
            self._announce = None
        finished = Finished(
            self.assignment.ref,
            report,
            stdout_bytes=self._streams[STDOUT].sent,
            stderr_bytes=self._streams[STDERR].sent,
        )
        self._emit(finished)
        return finished
