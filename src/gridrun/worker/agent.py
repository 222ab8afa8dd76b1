"""The worker process: one connection loop to the master, its slots, and its outbox.

`Agent.run(stop)` keeps a `Connect` stream open (reconnecting with exponential backoff and
jitter), hands what it is assigned to its `Slots` (which run each in an `Execution`), and keeps
every result in the on-disk outbox until the master acknowledges it. Running processes do not
depend on the connection: they go on while the master is away and their results are delivered
on reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time

import grpc

import gridrun
from gridrun import logs, transport
from gridrun._proto import worker_pb2 as pb
from gridrun._proto import worker_pb2_grpc
from gridrun.certs import common_name
from gridrun.errors import ConfigError
from gridrun.model import DEFAULT_OUTPUT_CAP, TASK_ID, AttemptRef
from gridrun.worker import executor
from gridrun.worker.config import WorkerConfig
from gridrun.worker.containment import choose, subtree_name
from gridrun.worker.events import (
    AgentEvent,
    AttemptEnded,
    Connected,
    Listener,
    OutputDropped,
    Running,
    Unacked,
)
from gridrun.worker.executor import Execution
from gridrun.worker.identity import Identity
from gridrun.worker.leaving import leave_by_itself
from gridrun.worker.machine import machine_resources
from gridrun.worker.outbox import Outbox
from gridrun.worker.outgoing import Outgoing
from gridrun.worker.replay import Replay
from gridrun.worker.slots import Slots, identities_of, policy_of
from gridrun.worker.spawning import Spawner
from gridrun.worker.transfer import Transfers
from gridrun.worker.wire import finished_to_pb, output_to_pb, ref_to_pb

log = logging.getLogger("gridrun.worker")
# how Hello says who the tasks run as, after the containment (gridrun workers shows it)
TASKS_AS = "; tasks as "

OUTPUT_QUEUE_LIMIT = 512  # messages; beyond it output is dropped (the master records the gap)
REPLAY_BYTES = 8 * 1024 * 1024  # output kept until its attempt's result is acknowledged
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 3.0
# A stream that ends sooner than this after it began counts as a failed connection (backoff),
# so a master that welcomes and then cannot serve (its store is down or its disk full) is not
# reconnected to in a tight loop.
STABLE_SESSION_S = 5.0
REFUSALS = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def backoff(failures: int, rng: random.Random) -> float:
    """Full-jitter exponential backoff: up to 0.1s, 0.2s, 0.4s ... capped at 3s."""
    return rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(failures, 16)))


class Agent:
    def __init__(self, config: WorkerConfig, rng: random.Random | None = None) -> None:
        self.config = config
        limit = config.time_limit_s
        self._leaves_at = None if limit is None else time.monotonic() + limit
        policy = policy_of(config)  # (an impossible one fails before the data dir is locked)
        identities = identities_of(config)
        if config.uses_tls:  # fail at start, not at the first connection
            self._credentials: grpc.ChannelCredentials | None = transport.channel_credentials(
                config.tls_ca, config.tls_cert, config.tls_key
            )
        else:
            self._credentials = None
        certified = common_name(config.tls_cert) if config.tls_cert else None
        if certified and config.name and config.name != certified:
            raise ConfigError(
                f"--name {config.name!r} differs from the certificate's name {certified!r};"
                " with mTLS a worker's id is the name in its certificate"
            )
        self.identity = Identity(config.data_dir, certified or config.name)
        if certified and self.identity.id != certified:
            self.identity.release()
            raise ConfigError(
                f"{config.data_dir} belongs to worker {self.identity.id!r}, but the certificate"
                f" is for {certified!r}; give this worker its own --data-dir"
            )
        self.outbox = Outbox(config.data_dir / "outbox")
        self.connected = asyncio.Event()  # set while a stream is open and welcomed
        self._welcomed = False  # a master has welcomed this process (Hello.resumed)
        self._unacked: set[AttemptRef] = {ref for ref, _ in self.outbox.pending()}
        self._all_acked = asyncio.Event()
        self._queue: Outgoing | None = None  # while a stream is open and welcomed
        # output of attempts not yet acknowledged: sent again on every reconnect (see replay)
        self._replay = Replay(REPLAY_BYTES, DEFAULT_OUTPUT_CAP)
        self._heartbeat_s = 2.0  # as the master says, in its Welcome (again when it paces us)
        self._unsendable = 0  # output bytes dropped because the master took them too slowly
        self._stop: asyncio.Event | None = None
        self._rng = rng or random.Random()
        self._listeners: list[Listener] = []
        self.refused: str | None = None  # why the master refused us, if it did
        self.resources = machine_resources(config)
        try:
            subtree = subtree_name(self.id, config.data_dir)
            self.containment = choose(subtree, config.containment, config.cgroup_root)
        except PermissionError as exc:
            raise ConfigError(str(exc)) from None
        unenforced = self.containment.unenforced(config.enforce_asks)
        if unenforced:  # (said loudly: a task's memory_mb or cpu would otherwise be a wish)
            log.warning(
                "this worker cannot limit a task's %s (containment: %s): it refuses tasks that"
                " ask for them; --no-enforce-asks places by the asks without limits",
                " or ".join(unenforced), self.containment.describe(),
            )  # fmt: skip
        # what starts each attempt's process (a small process of its own: see spawner)
        self.spawner = Spawner(self.containment.home())
        self._stub: worker_pb2_grpc.WorkerServiceStub | None = None  # the master's, now
        transfers = Transfers(lambda: self._stub, self.connected, config.join_token)
        self.slots = Slots(
            config, policy, self.id, self.containment, self.resources.gpus, self._emit,
            self._publish, lambda: self._queue, self.spawner, identities, transfers,
        )  # fmt: skip
        self.master_address = config.masters[0]  # the master this worker talks to now

    def _containment_said(self) -> str:
        """How Hello says this worker contains tasks: the mode and its detail, what it cannot
        limit, and who tasks run as (`gridrun workers` and the dashboard show it)."""
        said = self.containment.describe()
        if unenforced := self.containment.unenforced(self.config.enforce_asks):
            said += f", cannot limit {' or '.join(unenforced)}: refuses such asks"
        return f"{said}{TASKS_AS}{self.slots.tasks_as()}"

    @property
    def id(self) -> str:
        return self.identity.id

    @property
    def executions(self) -> dict[AttemptRef, Execution]:
        """The attempts it runs now."""
        return self.slots.executions

    @property
    def heartbeat_s(self) -> float:
        """How often this worker beats, as the master last said."""
        return self._heartbeat_s

    @property
    def dropped_output(self) -> int:
        """Output bytes no master will ever get (the master counts them as dropped too)."""
        return self._unsendable + self._replay.dropped

    def subscribe(self, listener: Listener) -> None:
        """Call `listener` with every AgentEvent from now on (on the agent's loop; it must
        not block). It hears the current state first."""
        self._listeners.append(listener)
        for event in (
            Connected(self.connected.is_set()),
            Running(len(self.executions)),
            Unacked(len(self._unacked)),
        ):
            listener(event)

    def _publish(self, event: AgentEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("a listener of the worker's events failed on %s", event)

    @property
    def unacked(self) -> frozenset[AttemptRef]:
        """Results on disk that the master has not acknowledged yet."""
        return frozenset(self._unacked)

    # ---- lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; then stop running tasks and deliver their results."""
        logs.bind(worker_id=self.id)
        options = [
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", int(BACKOFF_CAP_S * 1000)),
            *transport.MESSAGE_LIMITS,
        ]
        log.info(
            "worker %s starting: master %s, %d slots, labels %s, containment %s",
            self.id,
            self.config.master,
            self.config.slots,
            self.config.labels or "{}",
            self.containment.describe(),
        )
        self.containment.start()
        self.spawner.start()
        self._stop = stop
        channels = [
            grpc.aio.secure_channel(address, self._credentials, options)
            if self._credentials is not None
            else grpc.aio.insecure_channel(address, options=options)
            for address in self.config.masters
        ]
        connection = asyncio.create_task(self._connect_loop(channels), name="connection")
        connection.add_done_callback(self._connection_ended)
        leaving = asyncio.create_task(
            leave_by_itself(self.config.idle_timeout_s, self._leaves_at, self.slots, stop),
            name="leaving",
        )
        try:
            await stop.wait()
            await self._drain()
        finally:
            connection.cancel()
            leaving.cancel()
            await asyncio.gather(connection, leaving, return_exceptions=True)
            await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)
            self.spawner.close()
            self.containment.close()
            self.slots.close()
            self.identity.release()
        log.info("worker %s stopped", self.id)

    def _time_left_ms(self) -> int:
        """Until it leaves at its time limit (0: it has none; at least 1 while it has one)."""
        if self._leaves_at is None:
            return 0
        return max(1, int((self._leaves_at - time.monotonic()) * 1000))

    def _connection_ended(self, connection: asyncio.Task[None]) -> None:
        """A connection loop that fails stops the worker, loudly: without it the worker would
        sit with no master, running nothing, for ever."""
        if connection.cancelled() or connection.exception() is None:
            return
        log.error("the connection to the masters failed; stopping", exc_info=connection.exception())
        self.refused = f"the connection to the masters failed: {connection.exception()!r}"
        if self._stop is not None:
            self._stop.set()

    async def _drain(self) -> None:
        """Take nothing new; let running tasks finish for up to drain_grace_s, then stop the
        rest; deliver every result, waiting up to stop_grace_s for acknowledgements."""
        self.slots.stopping = True
        self.slots.give_back_held("the worker is draining")
        if self._queue is not None:
            self._queue.put(self._heartbeat_message())  # tell the master at once
        runs = self.slots.runs()
        if runs:
            grace = self.config.drain_grace_s
            log.info("draining: waiting up to %gs for %d running task(s)", grace, len(runs))
            _, pending = await asyncio.wait(runs, timeout=grace)
            if pending:
                log.warning("stopping %d task(s) still running after %gs", len(pending), grace)
                self.slots.stop_all("the worker is shutting down")
                await asyncio.gather(*pending, return_exceptions=True)
        if self._unacked and self.connected.is_set():
            try:
                async with asyncio.timeout(self.config.stop_grace_s):
                    while self._unacked:
                        self._all_acked.clear()
                        await self._all_acked.wait()
            except TimeoutError:
                log.warning(
                    "%d result(s) not acknowledged; kept in the outbox for next start",
                    len(self._unacked),
                )

    async def _connect_loop(self, channels: list[grpc.aio.Channel]) -> None:
        """Keep one stream open to a master; when one cannot be reached, try the next."""
        stubs = [worker_pb2_grpc.WorkerServiceStub(channel) for channel in channels]
        current = 0
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            self.master_address = self.config.masters[current]
            self._stub = stubs[current]  # (a task's files go over the same connection)
            welcomed = False
            began = loop.time()
            try:
                welcomed = await self._session(stubs[current])
                log.warning("connection to master %s ended; reconnecting", self.master_address)
            except grpc.aio.AioRpcError as exc:
                refusal = await self._refusal(exc)
                if refusal is not None:
                    self.refused = refusal
                    log.error("%s; stopping", self.refused)
                    if self._stop is not None:
                        self._stop.set()
                    return
                log.warning(
                    "master %s: %s %s", self.master_address, exc.code().name, exc.details() or ""
                )
            finally:
                if self.connected.is_set():
                    self.connected.clear()
                    self._publish(Connected(False))
                self._queue = None  # its output is sent again from the replay
                # nothing may start without a stream to announce it on
                self.slots.give_back_held("the connection to the master ended before it started")
            if welcomed and loop.time() - began >= STABLE_SESSION_S:
                failures = 0  # it may be back at once (a restart): try it first
            else:
                failures += 1
                current = (current + 1) % len(stubs)  # fail over
            if failures % len(stubs) == 0:  # every master tried once: back off
                await asyncio.sleep(backoff(failures // len(stubs), self._rng))

    async def _refusal(self, exc: grpc.aio.AioRpcError) -> str | None:
        """Why the master will not have this worker, if that is what `exc` means: a refused
        join token or id, or (what gRPC calls "Socket closed") a refused certificate."""
        if exc.code() in REFUSALS:
            return f"the master refused this worker: {exc.details()}"
        config = self.config
        if (
            exc.code() is grpc.StatusCode.UNAVAILABLE
            and "Socket closed" in (exc.details() or "")
            and config.uses_tls
        ):
            return await asyncio.to_thread(
                transport.tls_refusal,
                self.master_address,
                config.tls_ca,
                config.tls_cert,
                config.tls_key,
            )
        return None

    async def _session(self, stub: worker_pb2_grpc.WorkerServiceStub) -> bool:
        token = self.config.join_token
        call = stub.Connect(
            metadata=((transport.JOIN_TOKEN_KEY, f"Bearer {token}"),) if token else None
        )
        hello = pb.Hello(
            worker_id=self.id,
            hostname=socket.gethostname(),
            labels=self.config.labels,
            slots=self.config.slots,
            resources=self.resources,
            max_tasks=self.config.max_tasks,
            version=gridrun.__version__,
            running=[ref_to_pb(ref) for ref in self.executions],
            unacked=[ref_to_pb(ref) for ref in self._unacked],
            resumed=self._welcomed,
            identity_secret=self.identity.secret,
            binds_identity=True,
            containment=self._containment_said(),
            batches=True,
            announces_starts=True,
            takes_stdin=True,
            takes_script=True,
            takes_files=True,
            prefetch=self.config.prefetch_count,
            time_left_ms=self._time_left_ms(),
        )
        try:
            await call.write(pb.WorkerMessage(hello=hello))
            first = await call.read()
            if not isinstance(first, pb.MasterMessage) or first.WhichOneof("msg") != "welcome":
                log.error("master %s did not welcome us", self.master_address)
                return False
            if first.welcome.identity_secret:  # the first join: this id is ours from now on
                self.identity.keep_secret(first.welcome.identity_secret)
            self._heartbeat_s = max(first.welcome.heartbeat_interval_ms, 100) / 1000
            self._welcomed = True  # assignments may reach this process from here on
            queue = Outgoing(batches=first.welcome.batches)
            for execution in self.executions.values():
                if execution.pid is not None:
                    queue.put(
                        pb.WorkerMessage(
                            started=pb.Started(
                                ref=ref_to_pb(execution.ref),
                                started_at_ms=execution.started_at,
                                pid=execution.pid,
                            )
                        )
                    )
            if first.welcome.output_cap_bytes:
                self._replay.cap = first.welcome.output_cap_bytes
            # before any Finished: the attempt must still be active when its output arrives
            for ref, stream, offset, data, at in self._replay.resend(
                set(self.executions) | self._unacked
            ):
                queue.put(pb.WorkerMessage(output=output_to_pb(ref, stream, offset, data, at)))
            for _, payload in self.outbox.pending():
                queue.put(pb.WorkerMessage(finished=pb.Finished.FromString(payload)))
            self._queue = queue
            self.connected.set()
            self._publish(Connected(True))
            log.info("connected to master %s as %s", self.master_address, self.id)
            parts = [
                asyncio.create_task(queue.write_to(call)),
                asyncio.create_task(self._read(call)),
                asyncio.create_task(self._heartbeat(queue)),
            ]
            try:
                done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for part in parts:
                    part.cancel()
                await asyncio.gather(*parts, return_exceptions=True)
            for part in done:
                if (exc := part.exception()) is not None and not isinstance(
                    exc, grpc.aio.AioRpcError
                ):
                    log.error("worker stream failed: %r", exc)
            return True
        finally:
            call.cancel()

    def _heartbeat_message(self) -> pb.WorkerMessage:
        running = len(self.executions)
        free = 0 if self.slots.stopping else max(self.config.slots - running, 0)
        return pb.WorkerMessage(
            heartbeat=pb.Heartbeat(free_slots=free, running=running, draining=self.slots.stopping)
        )

    async def _heartbeat(self, queue: Outgoing) -> None:
        while True:
            queue.put(self._heartbeat_message())
            await asyncio.sleep(self._heartbeat_s)

    async def _read(self, call: object) -> None:
        assert isinstance(call, grpc.aio.StreamStreamCall)
        while True:
            msg = await call.read()
            if not isinstance(msg, pb.MasterMessage):
                return  # the master closed the stream
            if msg.WhichOneof("msg") == "batch":
                for item in msg.batch.messages:
                    self._command(item)
            else:
                self._command(msg)

    def _command(self, msg: pb.MasterMessage) -> None:
        kind = msg.WhichOneof("msg")
        if kind == "assign":
            ref = AttemptRef(msg.assign.ref.task_id, msg.assign.ref.attempt)
            if not TASK_ID.match(ref.task_id) or not (msg.assign.argv or msg.assign.script):
                log.error("refusing a malformed assignment %r", ref)
            elif ref not in self.slots and ref not in self._unacked:  # (else a duplicate)
                self.slots.assign(msg.assign)
        elif kind == "revoke":
            ref = AttemptRef(msg.revoke.ref.task_id, msg.revoke.ref.attempt)
            self.slots.revoke(ref, msg.revoke.reason)
        elif kind == "cancel":
            ref = AttemptRef(msg.cancel.ref.task_id, msg.cancel.ref.attempt)
            self.slots.cancel(ref, msg.cancel.reason)
        elif kind == "ack":
            for r in msg.ack.refs:
                ref = AttemptRef(r.task_id, r.attempt)
                self.outbox.remove(ref)
                self._unacked.discard(ref)
                self._replay.forget(ref)
            self._publish(Unacked(len(self._unacked)))
            if not self._unacked:
                self._all_acked.set()
        elif kind == "welcome":  # the fleet grew: the master paces us anew
            self._heartbeat_s = max(msg.welcome.heartbeat_interval_ms, 100) / 1000
            log.info("heartbeat every %gs from now on", self._heartbeat_s)
        elif kind == "drain":
            log.info("the master asked this worker to drain: %s", msg.drain.reason)
            if self._stop is not None:
                self._stop.set()
        else:
            log.info("ignoring %s from the master", kind)

    def _emit(self, event: executor.Event) -> None:
        queue = self._queue
        match event:
            case executor.Spawned(ref=ref, started_at=at, pid=pid):
                message = pb.WorkerMessage(
                    started=pb.Started(ref=ref_to_pb(ref), started_at_ms=at, pid=pid)
                )
            case executor.OutputChunk(
                ref=ref, stream=stream, offset=offset, data=data, written_at=written_at
            ):
                dropped = self._replay.dropped
                self._replay.record(ref, stream, offset, data, queue is not None, written_at)
                if self._replay.dropped > dropped:
                    self._publish(OutputDropped(self._replay.dropped - dropped))
                if queue is None:
                    return  # sent from the replay once a master listens
                if queue.qsize() >= OUTPUT_QUEUE_LIMIT:  # a master too slow to take it
                    self._unsendable += len(data)
                    self._publish(OutputDropped(len(data)))
                    return
                output = output_to_pb(ref, stream, offset, data, written_at)
                message = pb.WorkerMessage(output=output)
            case executor.Ended():
                finished = finished_to_pb(event)
                self.outbox.put(event.ref, finished.SerializeToString())
                self._unacked.add(event.ref)
                self._publish(AttemptEnded(event.report.outcome))
                self._publish(Unacked(len(self._unacked)))
                self.slots.ended(event.ref)
                message = pb.WorkerMessage(finished=finished)
        if queue is not None:
            queue.put(message)
