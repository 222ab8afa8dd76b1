"""The store's attempt verbs (a mixin of `RelationalStore`): what a worker reports about the
attempts it holds (started, output, finished, delivered) and losing the attempts of a worker
that is gone. Every report is checked against the attempt it names: a stale one changes
nothing."""

from __future__ import annotations

from collections.abc import Sequence

from gridrun.model import (
    AttemptRef,
    Outcome,
    Report,
    Stream,
    StreamOutput,
    Task,
    TaskState,
    Usage,
    settle,
    state_after,
    transition,
)
from gridrun.store import Finish, Finished, Output, Started, WorkerReport
from gridrun.store import queries as sql
from gridrun.store.relational_tx import Tx
from gridrun.store.rows import attempt_key, describe, task_from_row
from gridrun.store.task_steps import TaskSteps


class AttemptVerbs(TaskSteps):
    async def record_start(self, ref: AttemptRef, worker_id: str, started_at: int) -> bool:
        return await self._write(lambda tx: self._start(tx, ref, worker_id, started_at))

    async def append_output(
        self,
        ref: AttemptRef,
        worker_id: str,
        chunks: Sequence[tuple[Stream, int, bytes]],
        cap: int,
    ) -> bool:
        return await self._write(lambda tx: self._append(tx, ref, worker_id, chunks, cap))

    async def record_reports(
        self, worker_id: str, reports: Sequence[WorkerReport], cap: int, now: int
    ) -> list[Finish]:
        async def apply(tx: Tx) -> list[Finish]:
            results = []
            for report in reports:
                match report:
                    case Started(ref=ref, started_at=at):
                        applied = await self._start(tx, ref, worker_id, at)
                        results.append(Finish(task=None, applied=applied))
                    case Output(ref=ref, chunks=chunks):
                        applied = await self._append(tx, ref, worker_id, chunks, cap)
                        results.append(Finish(task=None, applied=applied))
                    case Finished(ref=ref, report=ended):
                        results.append(await self._finish(tx, ref, worker_id, ended, now))
            return results

        return await self._write(apply)

    async def _start(self, tx: Tx, ref: AttemptRef, worker_id: str, started_at: int) -> bool:
        task = await self._held(tx, ref, worker_id)
        if task is None:
            return False
        if task.state is TaskState.ASSIGNED:
            state = transition(task.state, TaskState.RUNNING)
            await tx.run(sql.START, str(state), started_at, ref.task_id)
            await tx.run(sql.START_ATTEMPT, str(state), started_at, *attempt_key(ref))
            await self._notice(tx, "task", ref.task_id)
        return True

    async def _append(
        self,
        tx: Tx,
        ref: AttemptRef,
        worker_id: str,
        chunks: Sequence[tuple[Stream, int, bytes]],
        cap: int,
    ) -> bool:
        if await self._held(tx, ref, worker_id) is None:
            return False
        streams = {
            s: StreamOutput(bytes(d), t) for s, d, t in await tx.all(sql.SELECT_OUTPUT, ref.task_id)
        }
        for stream, offset, data in chunks:
            streams[stream] = streams.get(stream, StreamOutput()).append(offset, data, cap)
        await tx.many(
            sql.UPSERT_OUTPUT,
            [(ref.task_id, s, out.data, out.total) for s, out in streams.items()],
        )
        await self._notice(tx, "task", ref.task_id)
        return True

    async def _end_attempt(
        self, tx: Tx, task: Task, ended: TaskState, report: Report, now: int
    ) -> None:
        """Record how the current attempt ended; move the task on (maybe back to the queue)."""
        ref = task.ref
        finished_at = report.finished_at or now
        error = report.error or None
        used = report.usage or Usage()
        await tx.run(
            sql.END_ATTEMPT, str(ended), report.started_at, finished_at, report.exit_code,
            report.signal, error, used.cpu_s, used.peak_memory_bytes, used.io_read_bytes,
            used.io_write_bytes, *attempt_key(ref),
        )  # fmt: skip
        await self._notice(tx, "task", task.id)
        if ended is TaskState.QUEUED:  # nothing ran (no free slot): back in line, not a try
            await tx.run(sql.REQUEUE, str(transition(task.state, ended)), 0, error, task.id)
            await self._notice(tx, "queued")
            return
        earlier = 0  # tries before this attempt: none before the first (no query)
        if task.attempt > 1:
            row = await tx.one(sql.COUNT_TRIES, task.id, task.attempt)
            assert row is not None
            earlier = row[0]
        state, delay = settle(task, ended, report.exit_code, earlier + 1)
        if state is TaskState.QUEUED:
            assert delay is not None
            why = describe(ended, report)
            note = f"attempt {task.attempt} {why}; retrying in {delay:g}s"
            await tx.run(sql.REQUEUE, str(state), now + round(delay * 1000), note, task.id)
        else:
            await tx.run(
                sql.FINISH, str(state), report.started_at, finished_at, report.exit_code,
                report.signal, error, used.cpu_s, used.peak_memory_bytes, task.id,
            )  # fmt: skip
            await self._ended(tx, task.id, state, now)

    async def record_finish(
        self, ref: AttemptRef, worker_id: str, report: Report, now: int
    ) -> Finish:
        return await self._write(lambda tx: self._finish(tx, ref, worker_id, report, now))

    async def _finish(
        self, tx: Tx, ref: AttemptRef, worker_id: str, report: Report, now: int
    ) -> Finish:
        task = await self._held(tx, ref, worker_id)
        if task is None:
            return Finish(task=None, applied=False)
        ended = state_after(report)
        if ended is TaskState.QUEUED and task.cancel_requested:
            ended = TaskState.CANCELLED
        await self._end_attempt(tx, task, ended, report, now)
        return Finish(task=await self._load(tx, ref.task_id), applied=True)

    async def mark_delivered(self, ref: AttemptRef, worker_id: str, now: int) -> bool:
        async def deliver(tx: Tx) -> bool:
            task = await self._held(tx, ref, worker_id)
            if task is None:
                return False
            state = transition(task.state, TaskState.DELIVERED)
            reason = "sent to a legacy worker, which reports no result"
            await tx.run(sql.END, str(state), now, reason, ref.task_id)
            await tx.run(
                sql.END_ATTEMPT,
                str(state),
                None,
                now,
                None,
                None,
                reason,
                None,
                None,
                None,
                None,
                *attempt_key(ref),
            )
            await self._ended(tx, ref.task_id, state, now)
            await self._notice(tx, "task", ref.task_id)
            return True

        return await self._write(deliver)

    async def mark_lost(
        self, worker_id: str, keep: Sequence[AttemptRef], now: int, reason: str
    ) -> list[Task]:
        kept = set(keep)

        async def lose(tx: Tx) -> list[Task]:
            lost: list[Task] = []
            for row in await tx.all(self._select_active() + self.dialect.lock, worker_id):
                task = task_from_row(row)
                if task.ref in kept:
                    continue
                # an attempt that never started and was asked to stop is simply cancelled;
                # one its worker would have announced before spawning it never ran: it goes
                # back to the queue (not a try)
                never_started = task.state is TaskState.ASSIGNED and task.cancel_requested
                ended = TaskState.CANCELLED if never_started else TaskState.LOST
                why = reason
                if ended is TaskState.LOST and task.state is TaskState.ASSIGNED:
                    announced = await tx.one(sql.SELECT_ANNOUNCES, *attempt_key(task.ref))
                    if announced is not None and announced[0]:
                        ended, why = TaskState.QUEUED, f"never started: {reason}"
                await self._end_attempt(tx, task, ended, Report(Outcome.EXITED, error=why), now)
                lost.append(await self._load(tx, task.id))
            return lost

        return await self._write(lose)

    async def active_attempts(self, worker_id: str) -> list[Task]:
        async def read(tx: Tx) -> list[Task]:
            return [task_from_row(r) for r in await tx.all(self._select_active(), worker_id)]

        return await self._read(read)
