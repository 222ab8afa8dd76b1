"""Live worker connections held by this master: what each may be sent, and what it holds now.

A `WorkerSession` is memory only: it exists while a worker's stream is open. The database stays
the source of truth; `inflight` mirrors the attempts the store says this worker holds, so the
scheduler can count free slots without a query.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from gridrun.master.core.scheduler import Capacity
from gridrun.model import AttemptRef, Task, TaskSpec, WorkerInfo, WorkerState
from gridrun.resources import NO_RESOURCES, offered
from gridrun.store import Started

ACK_DELAY_S = 0.02  # results acknowledged within this long share one Ack message
# A worker that announces its starts says Started before every spawn; most short tasks end
# within milliseconds, so their Started is written with their Finished (one transaction, not
# two in turn) unless this long passes first (see WorkerStreams.reports).
STARTED_DEFER_S = 0.01


@dataclass(frozen=True, slots=True)
class WelcomeCmd:
    worker_id: str
    heartbeat_interval_s: float
    output_cap: int
    identity_secret: str = ""  # issued on a worker id's first join


@dataclass(frozen=True, slots=True)
class AssignCmd:
    task: Task
    kill_grace_s: float
    secret_env: Mapping[str, str] = field(default_factory=dict)  # unsealed, for this Assign only
    files_ticket: str = ""  # with inputs or collect globs: what its file calls show
    collect_budget: int = 0  # bytes of files it may collect


@dataclass(frozen=True, slots=True)
class CancelCmd:
    ref: AttemptRef
    reason: str


@dataclass(frozen=True, slots=True)
class AckCmd:
    refs: tuple[AttemptRef, ...]


@dataclass(frozen=True, slots=True)
class DrainCmd:
    reason: str


@dataclass(frozen=True, slots=True)
class RevokeCmd:
    """Give back `ref` if it has not started (only to a worker that takes batches)."""

    ref: AttemptRef
    reason: str


Command = WelcomeCmd | AssignCmd | CancelCmd | AckCmd | DrainCmd | RevokeCmd


@dataclass(eq=False)
class WorkerSession:
    """One open worker stream. Commands queue here; the rpc edge writes them to the wire."""

    worker_id: str
    hostname: str
    labels: Mapping[str, str]
    slots: int
    last_seen: float
    version: str = ""
    legacy: bool = False
    containment: str = ""  # as its Hello says (see gridrun.worker.containment)
    queue_limit: int = 1024
    inflight: dict[AttemptRef, TaskSpec] = field(default_factory=dict)  # with what they asked
    reported: set[AttemptRef] = field(default_factory=set)  # its Hello: running or unacked
    close_reason: str | None = None
    connected_at: int | None = None  # epoch ms
    draining: bool = False  # finishing its tasks before it leaves: place nothing more on it
    # its Hello is reconciled with the store: until then nothing is placed on it (a claim made
    # meanwhile would be ended `lost` by that reconciliation, as an attempt the worker lacks)
    reconciled: bool = False
    heartbeat_s: float = 2.0  # how often it was asked to beat (Pacing.pace)
    timeout_s: float = 10.0  # silent this long: its stream is closed and its lease runs out
    lease_until: int = 0  # epoch ms, as last written to the store
    resources: Mapping[str, int] = field(default_factory=dict)
    max_tasks: Mapping[str, int] = field(default_factory=dict)  # class -> at most at once
    identity_secret: str = ""  # issued to it now (its first join): sent in the Welcome
    # what its Hello says it speaks (see worker.proto): batched messages, Started written
    # before each spawn, and how many assignments it holds beyond its free slots
    batches: bool = False
    announces: bool = False
    prefetch: int = 0
    takes_stdin: bool = False  # it feeds an Assign's stdin to the process
    takes_script: bool = False  # it runs an Assign's script
    takes_files: bool = False  # it stages an Assign's inputs and collects its files
    leaves_at: float | None = None  # (monotonic) when it leaves at its time limit, if it has one
    quarantined: str | None = None  # why it gets no new work (missed deadlines)
    # what it joined with and from where: a quarantine follows these, not only the id (a
    # worker quarantined under one id must not come back clean under another)
    credential: str = ""  # its join token's name ("" without join tokens; mTLS: the id)
    host: str = ""  # the address it connected from
    joined_at: float = 0.0  # (monotonic) when this stream opened
    # when each attempt it holds was sent (monotonic) and which of them it said have started:
    # the master's own clock for the deadlines it enforces (Liveness.enforce_deadlines)
    sent_at: dict[AttemptRef, float] = field(default_factory=dict)
    started: set[AttemptRef] = field(default_factory=set)
    revoked: set[AttemptRef] = field(default_factory=set)  # asked back (RevokeCmd)
    freed_at: float = float("-inf")  # (monotonic) when an attempt it held last ended
    # Started reports not yet written (STARTED_DEFER_S), and the lock that keeps this
    # worker's writes in order (a deferred flush and the next batch never race)
    deferred: list[Started] = field(default_factory=list)
    writing: asyncio.Lock = field(default_factory=asyncio.Lock)
    _defer_timer: asyncio.TimerHandle | None = None
    _queue: asyncio.Queue[Command | None] = field(default_factory=asyncio.Queue)
    _acks: list[AttemptRef] = field(default_factory=list)  # durable, not yet acknowledged
    _ack_timer: asyncio.TimerHandle | None = None

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    # ---- the attempts it holds (the service tells; the session keeps its own books)

    def hold(self, ref: AttemptRef, spec: TaskSpec, since: float, *, running: bool = False) -> None:
        """It holds `ref` from `since` (monotonic): sent now, or found running on a Hello."""
        self.inflight[ref] = spec
        self.sent_at[ref] = since
        if running:
            self.started.add(ref)

    def began(self, ref: AttemptRef, at: float) -> None:
        """It said `ref` started (a Started, or output) at `at` (monotonic). One it held
        (prefetch) is timed from its start, not from when it was sent (Trust.overdue)."""
        if ref in self.sent_at and ref not in self.started:
            self.started.add(ref)
            if self.prefetch:
                self.sent_at[ref] = at

    def release(self, ref: AttemptRef) -> None:
        """It holds `ref` no more (ended, lost, delivered)."""
        self.inflight.pop(ref, None)
        self.sent_at.pop(ref, None)
        self.started.discard(ref)
        self.revoked.discard(ref)
        self.reported.discard(ref)

    def send(self, command: Command) -> None:
        """Queue a command; a worker that lets its queue fill up is disconnected, not waited on."""
        if self.closed:
            return
        if self._queue.qsize() >= self.queue_limit:
            self.close(f"send queue full ({self.queue_limit} commands)")
            return
        self._queue.put_nowait(command)

    def ack(self, ref: AttemptRef) -> None:
        """Acknowledge a durable result; acks made within ACK_DELAY_S go out as one message
        (nothing waits on them: the worker only forgets its copy)."""
        self._acks.append(ref)
        if self._ack_timer is None:
            self._ack_timer = asyncio.get_running_loop().call_later(ACK_DELAY_S, self._send_acks)

    def _send_acks(self) -> None:
        self._ack_timer = None
        refs, self._acks = tuple(self._acks), []
        if refs:
            self.send(AckCmd(refs))

    def defer(self, started: Sequence[Started], flush: Callable[[], None]) -> None:
        """Keep Started reports to write with the next batch; `flush` writes them if none
        comes within STARTED_DEFER_S."""
        self.deferred += started
        if self._defer_timer is None:
            self._defer_timer = asyncio.get_running_loop().call_later(STARTED_DEFER_S, flush)

    def take_deferred(self) -> list[Started]:
        if self._defer_timer is not None:
            self._defer_timer.cancel()
            self._defer_timer = None
        taken, self.deferred = self.deferred, []
        return taken

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.close_reason = reason
        if self._ack_timer is not None:
            self._ack_timer.cancel()
        self._queue.put_nowait(None)

    async def next_command(self) -> Command | None:
        """The next command to write, or None once the session is closed."""
        if self.closed:
            return None
        return await self._queue.get()

    async def next_commands(self) -> list[Command] | None:
        """Every command queued (at least one, waiting for it), or None once the session is
        closed: what a worker that takes batches gets in one message."""
        first = await self.next_command()
        if first is None:
            return None
        commands = [first]
        while not self._queue.empty() and (command := self._queue.get_nowait()) is not None:
            commands.append(command)
        return commands

    def info(self, state: WorkerState, last_seen: int) -> WorkerInfo:
        """The worker's row as this session knows it."""
        if state is WorkerState.ONLINE and self.draining:
            state = WorkerState.DRAINING
        return WorkerInfo(
            id=self.worker_id,
            hostname=self.hostname,
            labels=self.labels,
            slots=self.slots,
            state=state,
            version=self.version,
            legacy=self.legacy,
            connected_at=self.connected_at,
            last_seen=last_seen,
            resources=self.resources,
            containment=self.containment,
        )

    def _open(self) -> tuple[int, int]:
        """(slots, prefetch) it offers now: none while draining or quarantined; prefetch
        only where it announces its starts."""
        if self.draining or self.quarantined:
            return 0, 0
        return self.slots, self.prefetch if self.announces else 0

    def places(self) -> int:
        """How many more assignments it takes now (Capacity.free, without making one)."""
        slots, prefetch = self._open()
        return max(slots + prefetch - len(self.inflight), 0)

    def capacity(self, now: float = 0.0) -> Capacity:
        """As placement sees it at `now` (monotonic: what is left of its time limit)."""
        taken = NO_RESOURCES
        by_class: dict[str, int] = {}
        for spec in self.inflight.values():
            if spec.resources:  # (most ask for nothing: no sum to make)
                taken = taken + spec.resources
            if spec.task_class is not None:
                by_class[spec.task_class] = by_class.get(spec.task_class, 0) + 1
        slots, prefetch = self._open()
        return Capacity(
            worker_id=self.worker_id,
            labels=self.labels,
            slots=slots,
            prefetch=prefetch,
            used=len(self.inflight),
            legacy=self.legacy,
            has=offered(self.resources) if self.resources else None,
            taken=taken,
            max_tasks=self.max_tasks,
            by_class=by_class,
            takes_stdin=self.takes_stdin,
            takes_script=self.takes_script,
            takes_files=self.takes_files,
            time_left=None if self.leaves_at is None else self.leaves_at - now,
        )


class Sessions:
    """The registry of open sessions, one per worker id (a reconnect replaces the old one)."""

    def __init__(self) -> None:
        self._by_id: dict[str, WorkerSession] = {}

    def add(self, session: WorkerSession) -> None:
        old = self._by_id.get(session.worker_id)
        if old is not None and old is not session:
            old.close("replaced by a new connection from the same worker")
        self._by_id[session.worker_id] = session

    def remove(self, session: WorkerSession) -> bool:
        """Forget `session` if it is still the current one for its worker."""
        if self._by_id.get(session.worker_id) is session:
            del self._by_id[session.worker_id]
            return True
        return False

    def get(self, worker_id: str | None) -> WorkerSession | None:
        return self._by_id.get(worker_id) if worker_id is not None else None

    def __iter__(self) -> Iterator[WorkerSession]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)
