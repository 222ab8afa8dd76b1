"""A worker's slots: the attempts it runs, and those it holds (prefetch) until a slot frees.

An assignment takes a free slot at once, or waits in the held queue (up to the worker's
prefetch), or is reported NO_SLOT. Taking a slot means: admit it (the worker's policy), make its
box, and announce it; the process is spawned only once its Started is written to the master
(never before: see Hello.announces_starts). So whatever is held, or waits for its Started to be
written, has run nothing: it is given back (NO_SLOT, not a try) when the stream ends, on a drain
or when the master revokes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable

from gridrun import logs
from gridrun._proto import worker_pb2 as pb
from gridrun.errors import ConfigError
from gridrun.model import AttemptRef, Outcome, Report
from gridrun.worker import executor
from gridrun.worker.config import WorkerConfig
from gridrun.worker.containment import Containment, limits_for
from gridrun.worker.events import AgentEvent, Running
from gridrun.worker.executor import Execution
from gridrun.worker.identities import Identity, TaskIdentities, parse_range
from gridrun.worker.machine import GpuPool
from gridrun.worker.outgoing import Outgoing
from gridrun.worker.policy import Launch, Limits, Policy, Refused, script_argv
from gridrun.worker.spawning import Spawner
from gridrun.worker.transfer import StageError, Transfers
from gridrun.worker.wire import assignment_from_pb, ref_to_pb

log = logging.getLogger("gridrun.worker")


def policy_of(config: WorkerConfig) -> Policy:
    """What this worker agrees to run, from its settings (checked against the machine)."""
    policy = Policy(
        allow=tuple(config.allow),
        allow_shell=config.allow_shell,
        run_as=config.run_as,
        limits=Limits(
            cpu_s=config.limit_cpu_s,
            address_space_mb=config.limit_address_space_mb,
            open_files=config.limit_open_files,
            processes=config.limit_processes,
        ),
        cwd_mode=config.cwd_mode,
        cwd_roots=tuple(config.cwd_roots),
        env_allow=tuple(config.env_allow),
        work_dir=config.data_dir / "work",
    )
    policy.check_startup()
    return policy


def identities_of(config: WorkerConfig) -> TaskIdentities | None:
    """The pool of per-attempt uids, if this worker runs each attempt as its own (checked
    against the machine's accounts)."""
    if config.task_ids is None:
        return None
    if config.run_as is not None:
        raise ConfigError(
            "--task-ids and --run-as exclude each other: tasks run as one or the other"
        )
    if os.geteuid() != 0:
        raise ConfigError("--task-ids needs the worker to run as root")
    identities = TaskIdentities(*parse_range(config.task_ids))
    identities.check_startup()
    return identities


class Slots:
    def __init__(
        self,
        config: WorkerConfig,
        policy: Policy,
        worker_id: str,
        containment: Containment,
        gpus: int,
        emit: Callable[[executor.Event], None],
        publish: Callable[[AgentEvent], None],
        outgoing: Callable[[], Outgoing | None],
        spawner: Spawner,
        identities: TaskIdentities | None = None,
        transfers: Transfers | None = None,
    ) -> None:
        self.config = config
        self._transfers = transfers  # a task's files (None: this worker takes none)
        self._spawner = spawner
        self._identities = identities
        self._identity: dict[AttemptRef, Identity] = {}  # each running attempt's own uid
        self.policy = policy
        self.executions: dict[AttemptRef, Execution] = {}
        # the agent's stream, which the Started of each attempt goes out on, while one is open
        # and welcomed (assignments arrive, and held ones start, only then)
        self._outgoing = outgoing
        self.stopping = False  # draining: nothing new starts
        self._worker_id = worker_id
        self._containment = containment
        self._gpus = GpuPool(gpus)
        self._emit = emit
        self._publish = publish
        self._runs: dict[AttemptRef, asyncio.Task[None]] = {}
        self.started = 0  # attempts started since the worker began (what ran, however briefly)
        # assignments taken beyond the free slots, in the order they came; and the attempts
        # whose Started is queued but not yet written (each spawns once it is)
        self._held: dict[AttemptRef, pb.Assign] = {}
        self._gates: dict[AttemptRef, asyncio.Future[None]] = {}

    def close(self) -> None:
        """The worker is stopping: let go of the task ids it keeps between attempts."""
        if self._identities is not None:
            self._identities.close()

    def tasks_as(self) -> str:
        """Who the tasks run as, and whether they are apart from each other, in words."""
        pool = self._identities
        if pool is not None:
            tmp = ", a /tmp each" if pool.private_tmp else ", a TMPDIR each (/tmp shared)"
            return f"a uid each ({pool.first}-{pool.last}{tmp})"
        if self.config.run_as is not None:
            return f"{self.config.run_as}, all alike (not apart from each other)"
        return "the worker's user (not apart from each other or from the worker)"

    def __contains__(self, ref: AttemptRef) -> bool:
        return ref in self.executions or ref in self._held

    def busy(self) -> bool:
        """Whether it runs anything, or holds an assignment for a slot."""
        return bool(self._runs or self._held)

    def runs(self) -> list[asyncio.Task[None]]:
        """The attempts running now, each until its result is emitted and its slot free."""
        return list(self._runs.values())

    def assign(self, msg: pb.Assign) -> None:
        """Run it in a free slot, or hold it for one, or say there is no room (nothing ran)."""
        ref = AttemptRef(msg.ref.task_id, msg.ref.attempt)
        if self.stopping:
            reason = "the worker is draining"
        elif len(self.executions) < self.config.slots and not self._held:
            self._begin(msg)
            return
        elif len(self._held) < self.config.prefetch_count:
            self._held[ref] = msg  # started the moment a slot frees (`start_held`)
            self.start_held()  # (a slot may be free: it waits on GPUs)
            return
        else:
            reason = "no free slot"
        self.not_run(ref, Outcome.NO_SLOT, reason)

    def revoke(self, ref: AttemptRef, reason: str) -> None:
        """The master wants a held one back: it goes back unstarted (not a try)."""
        if self._held.pop(ref, None) is not None:
            self.not_run(ref, Outcome.NO_SLOT, f"given back unstarted: {reason or 'revoked'}")

    def cancel(self, ref: AttemptRef, reason: str) -> None:
        if self._held.pop(ref, None) is not None:
            self.not_run(ref, Outcome.CANCELLED, f"{reason or 'cancelled'} (before it started)")
        elif (execution := self.executions.get(ref)) is not None:
            log.info("cancelling task %s attempt %d: %s", ref.task_id, ref.attempt, reason)
            execution.cancel(reason or "cancelled")

    def stop_all(self, reason: str) -> None:
        for execution in list(self.executions.values()):
            execution.cancel(reason, Outcome.WORKER_STOPPED)

    def ended(self, ref: AttemptRef) -> None:
        """Its result is out: the slot counts as free from now on."""
        if self.executions.pop(ref, None) is not None:
            self._publish(Running(len(self.executions)))

    def not_run(self, ref: AttemptRef, outcome: Outcome, error: str) -> None:
        """Report an attempt that ends without a process (nothing ran)."""
        self._emit(executor.Ended(ref, Report(outcome, error=error), 0, 0))

    def start_held(self) -> None:
        """Start held assignments, in order, while slots (and the GPUs the next asks) are free."""
        while self._held and not self.stopping and self._outgoing() is not None:
            ref, msg = next(iter(self._held.items()))
            if len(self.executions) >= self.config.slots or msg.gpus > self._gpus.free:
                return
            del self._held[ref]
            self._begin(msg)

    def give_back_held(self, reason: str) -> None:
        """Nothing held or waiting for its Started to be written has run: report each NO_SLOT
        (back to the queue, not a try)."""
        for ref in list(self._held):
            del self._held[ref]
            self.not_run(ref, Outcome.NO_SLOT, reason)
        for ref, gate in list(self._gates.items()):
            del self._gates[ref]
            self.executions[ref].cancel(reason, Outcome.NO_SLOT)  # never spawned
            gate.set_result(None)

    def _begin(self, msg: pb.Assign) -> None:
        """Take a slot for the assignment: check it, make its box, and announce it; the process
        is spawned once its Started is written."""
        ref = AttemptRef(msg.ref.task_id, msg.ref.attempt)
        if msg.gpus > self._gpus.free:
            self.not_run(ref, Outcome.NO_SLOT, f"{msg.gpus} GPUs asked, {self._gpus.free} free")
            return
        assignment = assignment_from_pb(msg)
        task_env = {
            **assignment.env,
            **msg.secret_env,  # passed to the process only: never logged, never kept
            "GRIDRUN_TASK_ID": ref.task_id,
            "GRIDRUN_ATTEMPT": str(ref.attempt),
            "GRIDRUN_WORKER_ID": self._worker_id,
        }
        if msg.gpus:
            task_env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self._gpus.peek(msg.gpus)))
        identity = None
        if self._identities is not None:
            try:
                identity = self._identities.take()
            except OSError as exc:
                self.not_run(ref, Outcome.NO_SLOT, f"no identity for the task: {exc}")
                return
        argv, shell = assignment.argv, assignment.shell
        if msg.script:  # counted as a shell task: the worker runs what the script says
            argv, shell = script_argv(msg.script, argv), True
        files = bool(msg.inputs or msg.collect)
        try:
            if files and self._transfers is None:
                raise Refused("this worker does not take tasks with files")
            launch = self.policy.admit(
                ref.task_id, ref.attempt, argv, shell, assignment.cwd,
                task_env, self.config.base_env, identity, workdir=files,
            )  # fmt: skip
        except Refused as refusal:
            self._give_back(identity)
            log.warning(
                "rejected task %s attempt %d: %s", ref.task_id, ref.attempt, refusal,
                extra={"task_id": ref.task_id, "attempt": ref.attempt},
            )  # fmt: skip
            self.not_run(ref, Outcome.REJECTED, str(refusal))
            return
        if msg.stdin or msg.script:
            launch = dataclasses.replace(launch, stdin=msg.stdin or None, script=msg.script or None)
        config = self.config
        unenforced = self._containment.unenforced(config.enforce_asks)
        if unenforced:  # an ask this worker cannot make a limit of is refused
            asked = [n for n, v in (("cpu", msg.cpu), ("memory", msg.memory_mb)) if v]
            cannot = [n for n in asked if n in unenforced]
            if cannot:
                self._give_back(identity)
                self.not_run(
                    ref, Outcome.REJECTED,
                    f"this worker cannot limit {' or '.join(cannot)} (containment:"
                    f" {self._containment.describe()}); run it where cgroups can, or start the"
                    " worker with --no-enforce-asks to place by asks without limits",
                )  # fmt: skip
                return
        limits = limits_for(msg.memory_mb, msg.cpu, config.task_pids or None, config.enforce_asks)
        try:
            box = self._containment.box(ref, limits)
        except OSError as exc:
            self._give_back(identity)
            error = f"cannot create the attempt's cgroup: {exc.strerror or exc}"
            self.not_run(ref, Outcome.SPAWN_FAILED, error)
            return
        if identity is not None:
            self._identity[ref] = identity
        queue = self._outgoing()
        assert queue is not None
        self._gpus.take(ref, msg.gpus)
        after = self._collector(msg, launch) if msg.collect else None
        execution = Execution(
            assignment, launch, self._emit, started_delay_s=None, box=box, spawner=self._spawner,
            after=after,
        )  # fmt: skip
        self.executions[ref] = execution
        self.started += 1
        self._publish(Running(len(self.executions)))
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gates[ref] = gate
        stage = self._stager(msg, launch) if msg.inputs else None
        self._runs[ref] = asyncio.create_task(
            self._run(execution, gate, stage), name=f"task-{ref.task_id}"
        )
        if stage is None:  # (else it is announced once its inputs are written)
            self._announce(ref, queue)

    def _announce(self, ref: AttemptRef, queue: Outgoing) -> None:
        started = pb.Started(ref=ref_to_pb(ref), started_at_ms=time.time_ns() // 1_000_000)
        queue.put(pb.WorkerMessage(started=started), then=lambda: self._announced(ref))

    def _stager(self, msg: pb.Assign, launch: Launch) -> Callable[[], Awaitable[None]]:
        """Writing the attempt's inputs into its working directory (before it is announced:
        a failure is reported as nothing run)."""
        assert self._transfers is not None
        assert launch.scratch is not None
        transfers, workdir = self._transfers, launch.scratch
        ref = AttemptRef(msg.ref.task_id, msg.ref.attempt)

        async def stage() -> None:
            await transfers.stage(msg.files_ticket, ref, msg.inputs, workdir, launch.ids)

        return stage

    def _collector(self, msg: pb.Assign, launch: Launch) -> Callable[[Report], Awaitable[Report]]:
        """Sending back what the attempt's globs match, once it has ended; what could not be
        sent is added to its error."""
        assert self._transfers is not None
        assert launch.scratch is not None
        transfers, workdir = self._transfers, launch.scratch
        ref = AttemptRef(msg.ref.task_id, msg.ref.attempt)
        uid = launch.ids[0] if launch.ids is not None else None

        async def collect(report: Report) -> Report:
            note = await transfers.collect(
                msg.files_ticket, ref, workdir, list(msg.collect), msg.collect_budget_bytes, uid
            )
            if not note:
                return report
            return dataclasses.replace(report, error="; ".join(filter(None, (report.error, note))))

        return collect

    def _announced(self, ref: AttemptRef) -> None:
        """Its Started is written: spawn it now (not on the run task's next turn)."""
        gate = self._gates.pop(ref, None)
        if gate is not None:
            self.executions[ref].start()
            gate.set_result(None)

    async def _run(
        self,
        execution: Execution,
        gate: asyncio.Future[None],
        stage: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        ref = execution.ref
        logs.bind(task_id=ref.task_id, attempt=ref.attempt)  # this task's records
        try:
            if stage is not None:
                await self._staged(execution, gate, stage)
            await gate
            await execution.run()
        except Exception:
            log.exception("task %s attempt %d failed inside the worker", ref.task_id, ref.attempt)
        finally:
            self.ended(ref)
            self._runs.pop(ref, None)
            self._gpus.give_back(ref)
            self._containment.attempt_ended(e.pid for e in self.executions.values() if e.pid)
            if execution.launch.scratch is not None:
                shutil.rmtree(execution.launch.scratch, ignore_errors=True)
            # its box has ended everything it ran: the uid may serve another attempt
            self._give_back(self._identity.pop(ref, None))
            self.start_held()

    async def _staged(
        self, execution: Execution, gate: asyncio.Future[None], stage: Callable[[], Awaitable[None]]
    ) -> None:
        """Write its inputs, then announce it; if they cannot be written it ends unstarted
        (NO_SLOT, not a try, when the master was away; else SPAWN_FAILED, saying why)."""
        ref = execution.ref
        failure: tuple[Outcome, str] | None = None
        try:
            await stage()
        except StageError as exc:
            failure = (Outcome.NO_SLOT if exc.transient else Outcome.SPAWN_FAILED, str(exc))
        if gate.done():
            return  # given back meanwhile (the stream ended): it ends as that says
        queue = self._outgoing()
        if failure is None and queue is not None:
            self._announce(ref, queue)
            return
        outcome, error = failure or (Outcome.NO_SLOT, "the connection to the master ended")
        log.warning("task %s attempt %d not started: %s", ref.task_id, ref.attempt, error)
        self._gates.pop(ref, None)
        execution.cancel(error, outcome)
        gate.set_result(None)

    def _give_back(self, identity: Identity | None) -> None:
        if identity is not None and self._identities is not None:
            self._identities.give_back(identity)
