"""What a worker's execution says about a real process, and in which order: a process that ends
within the start window (STARTED_DELAY_S) is reported by its Finished alone; a longer one, or
one that writes output, is announced by Started first. The tests choose the window so that a
loaded machine cannot move a process to the other side of it: `true` gets a window of
seconds, `sleep` lasts ten windows."""

from __future__ import annotations

import asyncio
import os

from gridrun.model import AttemptRef, Outcome, Stream
from gridrun.worker import executor
from gridrun.worker.executor import Assignment, Ended, Execution, OutputChunk, Spawned
from gridrun.worker.policy import Launch
from gridrun.worker.spawning import Spawner

WIDE_WINDOW_S = 3.0  # `true` ends well within it, however loaded the machine


async def run(*argv: str, window_s: float = executor.STARTED_DELAY_S) -> list[executor.Event]:
    events: list[executor.Event] = []
    ref = AttemptRef("0123456789abcdef", 1)
    launch = Launch(argv=argv, env={"PATH": os.environ["PATH"]}, cwd=None)
    spawner = Spawner()
    try:
        await Execution(
            Assignment(ref, argv), launch, events.append, window_s, spawner=spawner
        ).run()
    finally:
        spawner.close()
    return events


async def test_a_process_that_ends_at_once_is_reported_by_its_finished_alone() -> None:
    events = await run("true", window_s=WIDE_WINDOW_S)
    assert [type(e) for e in events] == [Ended]
    finished = events[0]
    assert isinstance(finished, Ended)
    report = finished.report
    assert report.outcome is Outcome.EXITED
    assert report.exit_code == 0
    assert report.started_at is not None
    assert report.finished_at is not None
    assert 0 < report.started_at <= report.finished_at


async def test_a_longer_process_is_announced_by_started_with_its_pid() -> None:
    events = await run("sleep", str(executor.STARTED_DELAY_S * 10))
    assert [type(e) for e in events] == [Spawned, Ended]
    started, finished = events
    assert isinstance(started, Spawned)
    assert isinstance(finished, Ended)
    assert started.pid > 0
    assert started.started_at == finished.report.started_at


async def test_started_comes_before_the_first_output_however_quick_the_process() -> None:
    events = await run("sh", "-c", "echo hello; echo oops >&2")
    kinds = [type(e) for e in events]
    assert kinds[0] is Spawned, kinds
    assert kinds[-1] is Ended
    out = {e.stream: e.data for e in events if isinstance(e, OutputChunk)}
    assert out == {Stream.STDOUT: b"hello\n", Stream.STDERR: b"oops\n"}


async def test_no_started_is_sent_after_the_finished() -> None:
    events = await run("true", window_s=0.5)
    await asyncio.sleep(0.5 * 3)  # the announcement would be due by now
    assert [type(e) for e in events] == [Ended]


async def test_a_command_that_cannot_be_spawned_is_reported_as_spawn_failed() -> None:
    # a missing program (OSError), and a NUL byte no master should send (ValueError): each is
    # a result, not an exception that would leave the attempt unanswered
    for argv in (("/nonexistent/program",), ("echo", "a\x00b")):
        events = await run(*argv)
        assert [type(e) for e in events] == [Ended], argv
        finished = events[0]
        assert isinstance(finished, Ended)
        assert finished.report.outcome is Outcome.SPAWN_FAILED
        assert finished.report.error.startswith("cannot run "), finished.report.error


async def test_a_variable_that_is_not_utf8_reaches_the_process_as_it_was() -> None:
    """The worker's environment may hold bytes that are not UTF-8 (os.environ keeps them as
    surrogates); they travel to the spawner and the task unchanged."""
    raw = b"caf\xe9"
    events: list[executor.Event] = []
    ref = AttemptRef("0123456789abcdef", 1)
    argv = ("printenv", "ODD")
    env = {"PATH": os.environ["PATH"], "ODD": os.fsdecode(raw)}
    spawner = Spawner()
    try:
        launch = Launch(argv=argv, env=env, cwd=None)
        await Execution(Assignment(ref, argv), launch, events.append, spawner=spawner).run()
    finally:
        spawner.close()
    out = b"".join(e.data for e in events if isinstance(e, OutputChunk))
    assert out == raw + b"\n"
    finished = events[-1]
    assert isinstance(finished, Ended)
    assert finished.report.exit_code == 0
