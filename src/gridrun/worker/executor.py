"""One running process: started by the worker's spawner (gridrun.worker.spawning) in a
session and process group of its own, inside its box; stream its output, enforce its timeout,
and kill the whole group (SIGTERM, grace, SIGKILL) on cancel or timeout.

A task's background processes do not outlive it: when the main process ends, whatever is left
of its process group is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gridrun.model import AttemptRef, Outcome, Report, Stream
from gridrun.output import RUN_SPLIT_MS
from gridrun.worker.cgroups import GroupUsage
from gridrun.worker.containment import Box
from gridrun.worker.policy import Launch
from gridrun.worker.spawning import Exit, Process, Spawner, SpawnError

READ_SIZE = 64 * 1024
FLUSH_BYTES = 256 * 1024
FLUSH_INTERVAL_S = 0.05
# Started is sent once the process has run this long (or before its first output): most short
# commands end sooner, and their Finished alone says when they started, which saves the master
# a message and a write for each of them.
STARTED_DELAY_S = 0.01
# after the kill at an attempt's end, output pipes still held open (only by processes that
# escaped: no cgroup) are closed this much later; the attempt never waits on them longer
PIPE_GRACE_S = 1.0


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
class Spawned:
    """The process runs (sent on as the attempt's Started report)."""

    ref: AttemptRef
    started_at: int
    pid: int


@dataclass(frozen=True, slots=True)
class OutputChunk:
    ref: AttemptRef
    stream: Stream
    offset: int
    data: bytes
    written_at: int = 0  # epoch ms the run this chunk begins was read; 0: it continues one


@dataclass(frozen=True, slots=True)
class Ended:
    """The attempt is over, however (sent on as its Finished report)."""

    ref: AttemptRef
    report: Report
    stdout_bytes: int
    stderr_bytes: int


Event = Spawned | OutputChunk | Ended


class _Capture:
    """Collects one pipe's bytes between flushes, remembering the stream offset."""

    def __init__(self, ref: AttemptRef, number: Stream) -> None:
        self.ref = ref
        self.number = number
        self.sent = 0
        self.pending = bytearray()

    @property
    def end(self) -> int:
        return self.sent + len(self.pending)

    def take(self, upto: int, written_at: int = 0) -> OutputChunk | None:
        """The pending bytes before stream offset `upto`, as one chunk."""
        size = upto - self.sent
        if size <= 0:
            return None
        chunk = OutputChunk(
            self.ref, self.number, self.sent, bytes(self.pending[:size]), written_at
        )
        self.sent += size
        del self.pending[:size]
        return chunk


class _Runs:
    """The order output was read in across the two pipes: a run begins where the stream read
    changes, or RUN_SPLIT_MS after the run's start (so a long run still has timestamps)."""

    def __init__(self) -> None:
        self.pending: list[tuple[Stream, int, int]] = []  # (stream, offset, at) since a flush
        self._last: tuple[Stream, int] | None = None  # the stream and start of the current run

    def read(self, stream: Stream, offset: int, now_ms: int) -> None:
        last = self._last
        if last is None or last[0] is not stream or now_ms - last[1] >= RUN_SPLIT_MS:
            self.pending.append((stream, offset, now_ms))
            self._last = (stream, now_ms)


class Execution:
    def __init__(
        self,
        assignment: Assignment,
        launch: Launch,
        emit: Callable[[Event], None],
        started_delay_s: float | None = STARTED_DELAY_S,  # None: its Started was sent already
        box: Box | None = None,
        *,
        spawner: Spawner,
        after: Callable[[Report], Awaitable[Report]] | None = None,
    ) -> None:
        self.assignment = assignment
        self._after = after
        self._box = box or Box()
        self._spawner = spawner
        self._started_delay_s = started_delay_s
        self._launch = launch
        self._emit = emit
        self._cancelled = False
        self._stop: asyncio.Future[None] | None = None  # resolved by cancel() while it runs
        self._outcome_on_kill = Outcome.CANCELLED
        self._error = ""
        self._streams = {n: _Capture(assignment.ref, n) for n in Stream}
        self._runs = _Runs()
        self.pid: int | None = None
        self.started_at = 0
        self._spawning: asyncio.Future[Process] | None = None  # asked of the spawner
        self._announce: asyncio.TimerHandle | None = None  # sends Started, unless it ends first
        self._flush_timer: asyncio.TimerHandle | None = None
        self._pipes_open = 0
        self._pipes_closed: asyncio.Future[None] | None = None
        self._pipes: list[int] = []  # output pipes still open (fds)

    @property
    def launch(self) -> Launch:
        return self._launch

    @property
    def ref(self) -> AttemptRef:
        return self.assignment.ref

    def cancel(self, reason: str, outcome: Outcome = Outcome.CANCELLED) -> None:
        if not self._cancelled:
            self._cancelled = True
            self._outcome_on_kill = outcome
            self._error = reason
            if self._stop is not None and not self._stop.done():
                self._stop.set_result(None)

    def start(self) -> None:
        """Ask the spawner for the process now, without waiting for it (`run` then waits for
        it and its end). The worker calls this as it takes the assignment, so the launch does
        not wait for a turn of the event loop."""
        if self._spawning is not None or self._cancelled:
            return
        self.started_at = now_ms()
        self._spawning = self._spawner.spawn(
            self._launch, self._box.placement(), self._box.populated
        )

    async def run(self) -> Ended:
        """Run the process (started here unless `start` did) to its end and return (and emit)
        how it finished; its box is released however that went. With `after`, its report is
        what `after` makes of it once every process of the attempt is gone (the task's files
        are collected then: nothing of it is still writing)."""
        try:
            ended = await self._run()
        finally:
            self._box.close()
        if self._after is not None:
            ended = dataclasses.replace(ended, report=await self._after(ended.report))
        self._emit(ended)
        return ended

    async def _run(self) -> Ended:
        self.start()
        if self._spawning is None:  # cancelled before it started
            return self._finish(Report(self._outcome_on_kill, error=self._error))
        try:
            process = await self._spawning
        except SpawnError as exc:
            if self._box.populated():  # (the spawner died mid-launch: nothing may go on)
                self._box.kill()
            report = Report(
                Outcome.SPAWN_FAILED,
                started_at=self.started_at,
                finished_at=now_ms(),
                error=exc.strerror or str(exc),
            )
            return self._finish(report)
        self._watch(process)
        pid, exited = process.pid, process.exited
        outcome = Outcome.EXITED
        try:
            outcome = await self._wait(pid, exited)
        finally:
            await self._end_all(pid, exited)
        end = exited.result()
        usage = self._box.usage() or (
            GroupUsage(cpu_s=end.cpu_s) if end.cpu_s is not None else None
        )
        error = self._error if outcome is not Outcome.EXITED else ""
        code = end.code
        if code is None:
            error = error or "its exit status was lost with the worker's spawner"
        elif usage is not None and usage.oom_kills and code != 0:
            limit = self._box.memory_limit_mb()
            error = f"out of memory: limit {limit} MiB" if limit else "out of memory"
        return self._finish(
            Report(
                outcome,
                exit_code=code if code is not None and code >= 0 else None,
                signal=-code if code is not None and code < 0 else None,
                started_at=self.started_at,
                finished_at=now_ms(),
                error=error,
                usage=usage.measured() if usage is not None else None,
            )
        )

    def _watch(self, process: Process) -> None:
        """Read its output and wait for its end (or a cancel) from now on."""
        loop = asyncio.get_running_loop()
        self.pid = process.pid
        if self._started_delay_s is not None:
            self._announce = loop.call_later(self._started_delay_s, self._started)
        self._stop = loop.create_future()
        if self._cancelled:  # while it was being started
            self._stop.set_result(None)
        self._pipes_closed = loop.create_future()
        self._pipes = [process.stdout, process.stderr]
        for fd, number in ((process.stdout, Stream.STDOUT), (process.stderr, Stream.STDERR)):
            os.set_blocking(fd, False)
            loop.add_reader(fd, self._readable, loop, fd, self._streams[number])
            self._pipes_open += 1

    async def _end_all(self, pid: int, exited: asyncio.Future[Exit]) -> None:
        """The attempt is over (its main process exited, or it was stopped): kill whatever
        of it is left, and read the output to its end. Never waits for long on processes
        that escaped the box: their pipes are closed PIPE_GRACE_S after the kill."""
        assert self._pipes_closed is not None
        self._kill_group(pid, signal.SIGKILL)  # leftovers of the group, if any
        await asyncio.wait({exited})
        if self._box.populated():  # (most attempts leave nothing: no kill, no wait)
            self._box.kill()  # what is left of the attempt, wherever it went
            loop = asyncio.get_running_loop()
            deadline = loop.time() + PIPE_GRACE_S
            # the killed leave their group within moments (then it can be removed)
            while self._box.populated() and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        await asyncio.wait({self._pipes_closed}, timeout=PIPE_GRACE_S)
        if not self._pipes_closed.done():
            self._close_pipes()
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self._flush()

    async def _wait(self, pid: int, exited: asyncio.Future[Exit]) -> Outcome:
        assert self._stop is not None
        either: set[asyncio.Future[Any]] = {exited, self._stop}
        done, _ = await asyncio.wait(
            either,
            timeout=self.assignment.timeout_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if exited in done:
            return Outcome.EXITED
        if self._stop in done:
            outcome = self._outcome_on_kill
        else:
            outcome = Outcome.TIMED_OUT
            self._error = f"timed out after {self.assignment.timeout_s:g}s"
        await self._terminate(pid, exited)
        return outcome

    async def _terminate(self, pid: int, exited: asyncio.Future[Exit]) -> None:
        self._kill_group(pid, signal.SIGTERM)
        done, _ = await asyncio.wait({exited}, timeout=self.assignment.kill_grace_s)
        if not done:
            self._kill_group(pid, signal.SIGKILL)
            self._box.kill()  # a main process in another group (setsid) is in the box too
            await asyncio.wait({exited})

    @staticmethod
    def _kill_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def _close_pipes(self) -> None:
        """Stop reading output held open by processes outside the box (no cgroup here)."""
        loop = asyncio.get_running_loop()
        for fd in self._pipes:
            loop.remove_reader(fd)
            os.close(fd)
        self._pipes.clear()
        self._pipes_open = 0
        if self._pipes_closed is not None and not self._pipes_closed.done():
            self._pipes_closed.set_result(None)

    def _readable(self, loop: asyncio.AbstractEventLoop, fd: int, stream: _Capture) -> None:
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:  # end of file: nothing in the group holds the pipe any more
            loop.remove_reader(fd)
            os.close(fd)
            self._pipes.remove(fd)
            self._pipes_open -= 1
            if self._pipes_open == 0 and self._pipes_closed is not None:
                self._pipes_closed.set_result(None)
            return
        self._runs.read(stream.number, stream.end, time.time_ns() // 1_000_000)
        stream.pending += chunk
        if len(stream.pending) >= FLUSH_BYTES:
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = loop.call_later(FLUSH_INTERVAL_S, self._timed_flush)

    def _timed_flush(self) -> None:
        self._flush_timer = None
        self._flush()

    def _started(self) -> None:
        """Say the process started (once), before any of its output."""
        if self._announce is None:
            return
        self._announce.cancel()
        self._announce = None
        assert self.pid is not None
        self._emit(Spawned(self.assignment.ref, self.started_at, self.pid))

    def _flush(self) -> None:
        """Send what was read, in the order it was read: first what continues the run before
        this flush, then each run begun since (its chunk carries when it was read)."""
        streams = self._streams
        if any(s.pending for s in streams.values()):
            self._started()
        runs, self._runs.pending = self._runs.pending, []
        for stream in streams.values():  # (a continued run: the earliest bytes of this flush)
            first = next((offset for s, offset, _ in runs if s is stream.number), stream.end)
            chunk = stream.take(first)
            if chunk is not None:
                self._emit(chunk)
        for i, (number, _, at) in enumerate(runs):
            upto = next((o for s, o, _ in runs[i + 1 :] if s is number), streams[number].end)
            chunk = streams[number].take(upto, at)
            if chunk is not None:
                self._emit(chunk)

    def _finish(self, report: Report) -> Ended:
        if self._announce is not None:  # it ended before Started was due: Finished says it all
            self._announce.cancel()
            self._announce = None
        return Ended(
            self.assignment.ref,
            report,
            stdout_bytes=self._streams[Stream.STDOUT].sent,
            stderr_bytes=self._streams[Stream.STDERR].sent,
        )
