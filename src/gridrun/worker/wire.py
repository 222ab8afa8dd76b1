"""The worker's side of the protocol: an Assign as the executor's Assignment, and the
worker's domain events as protobuf messages."""

from __future__ import annotations

from collections.abc import Mapping

from gridrun._proto import worker_pb2 as pb
from gridrun.model import AttemptRef, Outcome, Stream, Usage
from gridrun.worker import executor

OUTCOMES: Mapping[Outcome, int] = {
    Outcome.EXITED: pb.OUTCOME_EXITED,
    Outcome.TIMED_OUT: pb.OUTCOME_TIMED_OUT,
    Outcome.CANCELLED: pb.OUTCOME_CANCELLED,
    Outcome.SPAWN_FAILED: pb.OUTCOME_SPAWN_FAILED,
    Outcome.NO_SLOT: pb.OUTCOME_NO_SLOT,
    Outcome.WORKER_STOPPED: pb.OUTCOME_WORKER_STOPPED,
    Outcome.REJECTED: pb.OUTCOME_REJECTED,
}


def ref_to_pb(ref: AttemptRef) -> pb.AttemptRef:
    return pb.AttemptRef(task_id=ref.task_id, attempt=ref.attempt)


def output_to_pb(
    ref: AttemptRef, stream: Stream, offset: int, data: bytes, written_at: int = 0
) -> pb.Output:
    if stream == Stream.STDOUT:
        return pb.Output(
            ref=ref_to_pb(ref), stdout_offset=offset, stdout=data, written_at_ms=written_at
        )
    return pb.Output(
        ref=ref_to_pb(ref), stderr_offset=offset, stderr=data, written_at_ms=written_at
    )


def finished_to_pb(event: executor.Ended) -> pb.Finished:
    r = event.report
    return pb.Finished(
        ref=ref_to_pb(event.ref),
        outcome=OUTCOMES[r.outcome],  # type: ignore[arg-type]
        has_exit_code=r.exit_code is not None,
        exit_code=r.exit_code or 0,
        signal=r.signal or 0,
        started_at_ms=r.started_at or 0,
        finished_at_ms=r.finished_at or 0,
        error=r.error,
        stdout_bytes=event.stdout_bytes,
        stderr_bytes=event.stderr_bytes,
        usage=usage_to_pb(r.usage),
    )


def usage_to_pb(usage: Usage | None) -> pb.Usage | None:
    if usage is None:
        return None
    measured = pb.Usage()
    if usage.cpu_s is not None:
        measured.cpu_s = usage.cpu_s
    if usage.peak_memory_bytes is not None:
        measured.peak_memory_bytes = usage.peak_memory_bytes
    if usage.io_read_bytes is not None:
        measured.io_read_bytes = usage.io_read_bytes
    if usage.io_write_bytes is not None:
        measured.io_write_bytes = usage.io_write_bytes
    return measured


def assignment_from_pb(msg: pb.Assign) -> executor.Assignment:
    return executor.Assignment(
        ref=AttemptRef(msg.ref.task_id, msg.ref.attempt),
        argv=tuple(msg.argv),
        env=dict(msg.env),
        cwd=msg.cwd or None,
        timeout_s=msg.timeout_ms / 1000 if msg.timeout_ms else None,
        kill_grace_s=msg.kill_grace_ms / 1000,
        shell=msg.shell,
    )
