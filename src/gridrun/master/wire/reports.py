"""What a worker reports, checked at the edge like an HTTP body: a worker is a client, and may
be a broken or hostile one. A report that fails a check ends the stream (INVALID_ARGUMENT) and
is never stored, so a stored task always reads back.

Times must fall within a window around the master's own clock (a task may run a week and its
result reach the master days later; a worker's clock may be off by minutes, not years) and in
order; exit codes, signals, sizes and offsets in range; text without NUL and bounded.
"""

from __future__ import annotations

from gridrun._proto import worker_pb2 as pb
from gridrun.model import TASK_ID, AttemptRef
from gridrun.spec import MAX_ATTEMPTS

PAST_WINDOW_MS = 30 * 24 * 3600 * 1000  # a result may arrive this long after it happened
FUTURE_WINDOW_MS = 10 * 60 * 1000  # how far ahead of the master a worker's clock may be
MAX_ERROR_CHARS = 4096
MAX_OFFSET = 1 << 53
MAX_SIGNAL = 128
MAX_HELD = 100_000  # attempts a Hello may say it runs or holds results of
MAX_CPU_S = 1e9  # CPU seconds an attempt may report (30 years of one CPU)
MAX_BYTES = (1 << 63) - 1  # what a database integer holds


class BadReport(Exception):
    """A worker's message that must not be believed; the message says which field."""


def checked_ref(ref: pb.AttemptRef) -> AttemptRef:
    if not TASK_ID.match(ref.task_id) or not 1 <= ref.attempt <= MAX_ATTEMPTS:
        raise BadReport(f"invalid attempt reference {ref.task_id[:80]!r} #{ref.attempt}")
    return AttemptRef(ref.task_id, ref.attempt)


def _check_time(what: str, ms: int, now_ms: int) -> None:
    if ms and not now_ms - PAST_WINDOW_MS <= ms <= now_ms + FUTURE_WINDOW_MS:
        raise BadReport(f"{what} {ms} is not within 30 days before to 10 minutes after now")


def check_started(msg: pb.Started, now_ms: int) -> AttemptRef:
    ref = checked_ref(msg.ref)
    _check_time("started_at_ms", msg.started_at_ms, now_ms)
    return ref


def check_output(msg: pb.Output) -> AttemptRef:
    ref = checked_ref(msg.ref)
    for what, offset, data in (
        ("stdout", msg.stdout_offset, msg.stdout),
        ("stderr", msg.stderr_offset, msg.stderr),
    ):
        if offset + len(data) > MAX_OFFSET:
            raise BadReport(f"{what} offset {offset} is out of range")
    return ref


def check_finished(msg: pb.Finished, now_ms: int) -> AttemptRef:
    ref = checked_ref(msg.ref)
    if msg.outcome not in pb.Outcome.values() or msg.outcome == pb.OUTCOME_UNSPECIFIED:
        raise BadReport(f"unknown outcome {msg.outcome}")
    if msg.has_exit_code and not 0 <= msg.exit_code <= 255:
        raise BadReport(f"exit_code {msg.exit_code} is not 0..255")
    if not 0 <= msg.signal <= MAX_SIGNAL:
        raise BadReport(f"signal {msg.signal} is not 0..{MAX_SIGNAL}")
    _check_time("started_at_ms", msg.started_at_ms, now_ms)
    _check_time("finished_at_ms", msg.finished_at_ms, now_ms)
    if msg.started_at_ms and msg.finished_at_ms and msg.finished_at_ms < msg.started_at_ms:
        raise BadReport("finished_at_ms is before started_at_ms")
    if len(msg.error) > MAX_ERROR_CHARS or "\x00" in msg.error:
        raise BadReport(f"error must be at most {MAX_ERROR_CHARS} characters, without NUL")
    usage = msg.usage
    if usage.HasField("cpu_s") and not 0 <= usage.cpu_s <= MAX_CPU_S:  # NaN fails too
        raise BadReport(f"usage.cpu_s {usage.cpu_s} is out of range")
    for name in ("peak_memory_bytes", "io_read_bytes", "io_write_bytes"):
        if usage.HasField(name) and getattr(usage, name) > MAX_BYTES:
            raise BadReport(f"usage.{name} is out of range")
    return ref


def check_heartbeat(msg: pb.Heartbeat, slots: int) -> None:
    if msg.free_slots > slots or msg.running > MAX_HELD:
        raise BadReport(f"heartbeat counts out of range ({msg.free_slots} free of {slots})")


def check_held(hello: pb.Hello) -> tuple[list[AttemptRef], list[AttemptRef]]:
    """The attempts a Hello says the worker runs and holds results of."""
    if len(hello.running) + len(hello.unacked) > MAX_HELD:
        raise BadReport(f"a Hello may list at most {MAX_HELD} attempts")
    return [checked_ref(r) for r in hello.running], [checked_ref(r) for r in hello.unacked]
