"""The gRPC edge for gridrun workers: one `Connect` stream per worker, protobuf <-> domain.

Reads a worker's messages in order and turns each into a service call; writes the session's
commands to the stream. Holds no state of its own beyond the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from gridrun import logs, transport
from gridrun._proto import worker_pb2 as pb
from gridrun.clock import Clock
from gridrun.errors import BadRequest, Forbidden, RequestTimeout, Unauthorized, Unavailable
from gridrun.master.core.access import Access
from gridrun.master.core.sessions import (
    AckCmd,
    AssignCmd,
    CancelCmd,
    Command,
    DrainCmd,
    RevokeCmd,
    WorkerSession,
)
from gridrun.master.core.trust import Trust
from gridrun.master.core.worker_streams import WorkerStreams
from gridrun.master.wire import reports
from gridrun.master.wire.file_calls import FileCalls
from gridrun.model import WORKER_ID, WORKER_ID_RULE, AttemptRef, Outcome, Report, Stream, Usage
from gridrun.output import Mark
from gridrun.spec import MAX_LABEL_BYTES, MAX_LABELS
from gridrun.store import Finished, Output, Started, WorkerReport

log = logging.getLogger("gridrun.master.rpc")

HELLO_TIMEOUT_S = 10.0
WRITE_DRAIN_S = 5.0  # how long a closing stream waits for a write already on the wire
MAX_SLOTS = 4096
MAX_PREFETCH = 4096
MAX_BATCH = 10_000  # reports in one WorkerBatch
REPORTS = ("started", "output", "finished")  # what a worker says about an attempt

OUTCOMES: dict[int, Outcome] = {
    pb.OUTCOME_EXITED: Outcome.EXITED,
    pb.OUTCOME_TIMED_OUT: Outcome.TIMED_OUT,
    pb.OUTCOME_CANCELLED: Outcome.CANCELLED,
    pb.OUTCOME_SPAWN_FAILED: Outcome.SPAWN_FAILED,
    pb.OUTCOME_NO_SLOT: Outcome.NO_SLOT,
    pb.OUTCOME_WORKER_STOPPED: Outcome.WORKER_STOPPED,
    pb.OUTCOME_REJECTED: Outcome.REJECTED,
}

Context = grpc.aio.ServicerContext[pb.WorkerMessage, pb.MasterMessage]


def ref_to_pb(ref: AttemptRef) -> pb.AttemptRef:
    return pb.AttemptRef(task_id=ref.task_id, attempt=ref.attempt)


def report_from_pb(msg: pb.Finished) -> Report:
    return Report(
        outcome=OUTCOMES.get(msg.outcome, Outcome.SPAWN_FAILED),
        exit_code=msg.exit_code if msg.has_exit_code else None,
        signal=msg.signal or None,
        started_at=msg.started_at_ms or None,
        finished_at=msg.finished_at_ms or None,
        error=msg.error,
        usage=usage_from_pb(msg.usage) if msg.HasField("usage") else None,
    )


def usage_from_pb(usage: pb.Usage) -> Usage:
    def field(name: str) -> int | None:
        return int(getattr(usage, name)) if usage.HasField(name) else None

    return Usage(
        cpu_s=usage.cpu_s if usage.HasField("cpu_s") else None,
        peak_memory_bytes=field("peak_memory_bytes"),
        io_read_bytes=field("io_read_bytes"),
        io_write_bytes=field("io_write_bytes"),
    )


def command_to_pb(command: Command) -> pb.MasterMessage:
    match command:
        case AssignCmd(task=task, kill_grace_s=grace, secret_env=secret_env):
            spec, files = task.spec, command
            return pb.MasterMessage(
                assign=pb.Assign(
                    ref=ref_to_pb(task.ref),
                    argv=list(spec.argv),
                    shell=spec.shell,
                    env=dict(spec.env),
                    cwd=spec.cwd or "",
                    timeout_ms=round(spec.timeout_s * 1000) if spec.timeout_s else 0,
                    kill_grace_ms=round(grace * 1000),
                    gpus=spec.resources.gpus,
                    cpu=spec.resources.cpu,
                    memory_mb=spec.resources.memory_mb,
                    secret_env=secret_env,
                    stdin=spec.stdin or b"",
                    script=spec.script or b"",
                    inputs=[
                        pb.InputRef(name=f.name, digest=f.digest, size=f.size, mode=f.mode)
                        for f in spec.inputs
                    ],
                    collect=list(spec.collect),
                    collect_budget_bytes=files.collect_budget if spec.collect else 0,
                    files_ticket=files.files_ticket,
                )
            )
        case CancelCmd(ref=ref, reason=reason):
            return pb.MasterMessage(cancel=pb.Cancel(ref=ref_to_pb(ref), reason=reason))
        case AckCmd(refs=refs):
            return pb.MasterMessage(ack=pb.Ack(refs=[ref_to_pb(ref) for ref in refs]))
        case DrainCmd(reason=reason):
            return pb.MasterMessage(drain=pb.Drain(reason=reason))
        case RevokeCmd(ref=ref, reason=reason):
            return pb.MasterMessage(revoke=pb.Revoke(ref=ref_to_pb(ref), reason=reason))
        case _:
            return pb.MasterMessage(
                welcome=pb.Welcome(
                    worker_id=command.worker_id,
                    heartbeat_interval_ms=round(command.heartbeat_interval_s * 1000),
                    output_cap_bytes=command.output_cap,
                    identity_secret=command.identity_secret,
                    batches=True,
                )
            )


def _printable(text: str, limit: int) -> bool:
    return len(text) <= limit and text.isprintable()


def hello_problem(hello: pb.Hello) -> str | None:
    """What is wrong with a Hello (None if nothing): ids, sizes and characters are bounded
    before anything reaches the store, a log line or a table."""
    if not WORKER_ID.match(hello.worker_id):
        return f"worker_id must be {WORKER_ID_RULE}"
    if not 0 < hello.slots <= MAX_SLOTS:
        return f"slots must be 1..{MAX_SLOTS}"
    if hello.prefetch > MAX_PREFETCH:
        return f"prefetch must be 0..{MAX_PREFETCH}"
    if (
        not _printable(hello.hostname, 255)
        or not _printable(hello.version, 64)
        or not (_printable(hello.containment, 200) or not hello.containment)
    ):
        return "hostname (255) and version (64) must be short printable text"
    if len(hello.labels) > MAX_LABELS:
        return f"at most {MAX_LABELS} labels"
    for key, value in hello.labels.items():
        if (
            not key
            or not _printable(key, MAX_LABEL_BYTES)
            or not _printable(value, MAX_LABEL_BYTES)
        ):
            return f"label names and values must be printable, at most {MAX_LABEL_BYTES} characters"
    if len(hello.max_tasks) > MAX_LABELS or not all(
        key and _printable(key, MAX_LABEL_BYTES) for key in hello.max_tasks
    ):
        return f"at most {MAX_LABELS} max_tasks classes, each a short printable name"
    return None


@dataclass(frozen=True, slots=True)
class Caps:
    """The most a worker may claim to have, whatever its Hello says (a worker advertising a
    million GPUs must not be offered the queue)."""

    slots: int = MAX_SLOTS
    cpus: int = 65536
    memory_mb: int = 1 << 30
    gpus: int = 1024


def peer_host(peer: str) -> str:
    """The address of a gRPC peer ('ipv4:10.0.0.5:41234' -> 'ipv4:10.0.0.5'; a Unix socket
    as it is)."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return f"{kind}:{rest.rsplit(':', 1)[0]}"
    return peer


class WorkerServicer:
    """Implements gridrun.v1.WorkerService (registered with add_WorkerServiceServicer_to_server)."""

    def __init__(
        self,
        streams: WorkerStreams,
        trust: Trust,
        clock: Clock,
        access: Access,
        caps: Caps = Caps(),
        files: FileCalls | None = None,
    ) -> None:
        self._streams, self._trust = streams, trust
        self._clock = clock
        self._access = access
        self._caps = caps
        self._files = files

    async def Fetch(  # noqa: N802 (the gRPC method name)
        self, request: pb.FetchRequest, context: Context
    ) -> AsyncIterator[pb.FileChunk]:
        assert self._files is not None  # (grpc.aio serves an async generator as a stream)
        async for chunk in self._files.fetch(request, context):
            yield chunk

    async def Collect(  # noqa: N802 (the gRPC method name)
        self, request_iterator: AsyncIterator[pb.CollectMessage], context: Context
    ) -> pb.CollectReply:
        assert self._files is not None
        return await self._files.collect(request_iterator, context)

    async def Connect(  # noqa: N802 (the gRPC method name)
        self, request_iterator: object, context: Context
    ) -> None:
        refusal = self._access.join_refusal(context.invocation_metadata() or (), context.peer())
        if refusal is not None:
            log.warning("refused a worker from %s: %s", context.peer(), refusal)
            await transport.abort(context, Unauthorized(refusal))
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                first = await context.read()
        except TimeoutError:
            await transport.abort(context, RequestTimeout(f"no Hello within {HELLO_TIMEOUT_S:g}s"))
        if not isinstance(first, pb.WorkerMessage) or first.WhichOneof("msg") != "hello":
            await transport.abort(context, BadRequest("the first message must be Hello"))
        hello = first.hello
        problem = hello_problem(hello)
        try:
            running, unacked = reports.check_held(hello)
        except reports.BadReport as exc:
            problem = str(exc)
        if problem is not None:
            log.warning("refused a Hello from %s: %s", context.peer(), problem)
            await transport.abort(context, BadRequest(problem))
        refusal = self._access.identity_refusal(
            hello.worker_id, context.auth_context(), context.peer()
        )
        if refusal is not None:
            log.warning("refused a worker from %s: %s", context.peer(), refusal)
            await transport.abort(context, Forbidden(refusal))
        credential = self._access.credential(context.invocation_metadata() or ())
        refusal = self._access.allocation_refusal(hello.worker_id, credential, context.peer())
        if refusal is not None:
            log.warning("refused a worker from %s: %s", context.peer(), refusal)
            await transport.abort(context, Forbidden(refusal))
        if not self._access.bind_worker_certs:  # with mTLS, its certificate is its identity
            try:
                refusal, issued = await self._trust.bind_identity(
                    hello.worker_id,
                    hello.identity_secret,
                    binds=hello.binds_identity,
                    credential=credential,
                )
            except Unavailable as exc:
                await transport.abort(context, exc)
            if refusal is not None:
                log.warning("refused a worker from %s: %s", context.peer(), refusal)
                self._access.audit.record(
                    "worker.refused", None, context.peer(), worker=hello.worker_id, reason=refusal
                )
                await transport.abort(context, Forbidden(refusal))
        else:
            issued = ""
        caps = self._caps
        if hello.slots > caps.slots or hello.resources.gpus > caps.gpus:
            log.warning(
                "worker %s claims %d slots and %d GPUs; this master counts at most %d and %d",
                hello.worker_id, hello.slots, hello.resources.gpus, caps.slots, caps.gpus,
            )  # fmt: skip
        session = WorkerSession(
            worker_id=hello.worker_id,
            hostname=hello.hostname,
            labels=dict(hello.labels),
            slots=min(hello.slots, caps.slots),
            version=hello.version,
            containment=hello.containment,
            last_seen=self._clock.monotonic(),
            queue_limit=(hello.slots + min(hello.prefetch, MAX_PREFETCH)) * 4 + 256,
            max_tasks=dict(hello.max_tasks),
            identity_secret=issued,
            batches=hello.batches,
            announces=hello.announces_starts,
            takes_stdin=hello.takes_stdin,
            takes_script=hello.takes_script,
            takes_files=hello.takes_files,
            leaves_at=(
                self._clock.monotonic() + hello.time_left_ms / 1000 if hello.time_left_ms else None
            ),
            credential=credential or (hello.worker_id if self._access.bind_worker_certs else ""),
            host=peer_host(context.peer()),
            joined_at=self._clock.monotonic(),
            # held assignments are given back unstarted only by a worker that announces
            prefetch=hello.prefetch if hello.announces_starts else 0,
            resources={
                "cpus": min(hello.resources.cpus, caps.cpus),
                "memory_mb": min(hello.resources.memory_mb, caps.memory_mb),
                "gpus": min(hello.resources.gpus, caps.gpus),
            },
        )
        logs.bind(worker_id=session.worker_id)  # on every record of this stream from here
        log.info(
            "worker %s connected from %s (%d slots)",
            session.worker_id,
            context.peer(),
            session.slots,
        )
        try:
            await self._streams.hello(session, running, unacked, resumed=hello.resumed)
            reader = asyncio.create_task(self._read(context, session))
            writer = asyncio.create_task(self._write(context, session))
            try:
                await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    # Let a write in flight complete before the call ends: a write abandoned
                    # mid-flight leaves the call unable to send its status, and the worker
                    # would wait for an end that never comes.
                    session.close(session.close_reason or "reading the worker's stream failed")
                    await asyncio.wait({writer}, timeout=WRITE_DRAIN_S)
            finally:
                for task in (reader, writer):
                    task.cancel()
                results = await asyncio.gather(reader, writer, return_exceptions=True)
            for result in results:
                if isinstance(result, Unavailable | reports.BadReport):
                    raise result
                if isinstance(result, Exception) and not isinstance(result, asyncio.CancelledError):
                    log.error("worker %s stream failed: %r", session.worker_id, result)
        except reports.BadReport as exc:
            log.warning("worker %s sent a bad report: %s", session.worker_id, exc)
            session.close(f"it sent a bad report: {exc}")
            await transport.abort(context, BadRequest(f"bad report: {exc}"))
        except Unavailable as exc:
            # The store cannot take what the worker reports (unreachable, disk full): end the
            # stream as UNAVAILABLE, so the worker backs off before it tries again (an ended
            # stream would have it reconnect at once) and keeps its results meanwhile.
            log.warning("worker %s: %s", session.worker_id, exc.message)
            session.close(f"the store is unavailable: {exc.message}")
            await transport.abort(context, exc)
        finally:
            session.close(session.close_reason or "stream ended")
            log.info("worker %s disconnected: %s", session.worker_id, session.close_reason)
            try:
                await self._streams.disconnected(session)
            except Unavailable as exc:  # its lease runs out by itself; nothing to undo
                log.warning("could not record worker %s offline: %s", session.worker_id, exc)

    async def _write(self, context: Context, session: WorkerSession) -> None:
        # the Welcome goes out alone, first; then a worker older than batches gets one message
        # per command, and one that takes them everything queued since the last write
        welcome = await session.next_command()
        if welcome is None:
            return
        await context.write(command_to_pb(welcome))
        if not session.batches:
            while (command := await session.next_command()) is not None:
                await context.write(command_to_pb(command))
            return
        while (commands := await session.next_commands()) is not None:
            messages = map(command_to_pb, commands)
            for batch in transport.batched(messages, pb.MasterMessage.ByteSize):
                await _write_batch(context, batch)

    async def _read(self, context: Context, session: WorkerSession) -> None:
        while True:
            msg = await context.read()
            if not isinstance(msg, pb.WorkerMessage):  # EOF: the worker closed its side
                session.close("the worker closed the stream")
                return
            session.last_seen = self._clock.monotonic()
            kind = msg.WhichOneof("msg")
            if kind == "batch":
                await self._batch(session, msg.batch)
            elif kind in REPORTS:
                report = _report(msg, self._clock.now_ms())
                if report is not None:
                    with logs.fields(task_id=report.ref.task_id, attempt=report.ref.attempt):
                        await self._streams.reports(session, [report])
            elif kind == "heartbeat":
                await self._heartbeat(session, msg.heartbeat)
            else:
                log.warning("worker %s sent an unexpected %s; ignored", session.worker_id, kind)

    async def _batch(self, session: WorkerSession, batch: pb.WorkerBatch) -> None:
        """A worker's batch: its reports are checked, then applied in one transaction."""
        if not session.batches:
            raise reports.BadReport("a batch from a worker whose Hello did not offer batches")
        if len(batch.messages) > MAX_BATCH:
            raise reports.BadReport(f"a batch may hold at most {MAX_BATCH} messages")
        now = self._clock.now_ms()
        applied: list[WorkerReport] = []
        for msg in batch.messages:
            kind = msg.WhichOneof("msg")
            if kind in REPORTS:
                if (report := _report(msg, now)) is not None:
                    applied.append(report)
            elif kind == "heartbeat":
                await self._heartbeat(session, msg.heartbeat)
            else:
                raise reports.BadReport(f"a batch may not hold a {kind}")
        if applied:
            await self._streams.reports(session, applied)

    async def _heartbeat(self, session: WorkerSession, heartbeat: pb.Heartbeat) -> None:
        reports.check_heartbeat(heartbeat, MAX_SLOTS)
        # last_seen is updated for every message; a heartbeat may announce a drain
        if heartbeat.draining and not session.draining:
            await self._streams.draining(session, "the worker is shutting down")


async def _write_batch(context: Context, messages: list[pb.MasterMessage]) -> None:
    if len(messages) == 1:
        await context.write(messages[0])
    else:
        await context.write(pb.MasterMessage(batch=pb.MasterBatch(messages=messages)))


MAX_EPOCH_MS = 253402300800000  # 10000-01-01: a time a worker gives past it is not kept


def _report(msg: pb.WorkerMessage, now_ms: int) -> WorkerReport | None:
    """A Started, Output or Finished, checked (BadReport if it must not be believed); None
    for output without bytes."""
    if msg.HasField("started"):
        ref = reports.check_started(msg.started, now_ms)
        return Started(ref, msg.started.started_at_ms)
    if msg.HasField("output"):
        out = msg.output
        ref = reports.check_output(out)
        chunks = []
        marks = []
        at = out.written_at_ms if out.written_at_ms < MAX_EPOCH_MS else 0  # (shown, not trusted)
        if out.stdout:
            chunks.append((Stream.STDOUT, out.stdout_offset, out.stdout))
            if at:
                marks.append(Mark(Stream.STDOUT, out.stdout_offset, at))
        if out.stderr:
            chunks.append((Stream.STDERR, out.stderr_offset, out.stderr))
            if at:
                marks.append(Mark(Stream.STDERR, out.stderr_offset, at))
        return Output(ref, chunks, marks) if chunks else None
    ref = reports.check_finished(msg.finished, now_ms)
    return Finished(ref, report_from_pb(msg.finished))
