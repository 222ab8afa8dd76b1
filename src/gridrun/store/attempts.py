"""The store's attempt verbs (`store.attempts`, one object over the backend): what a worker reports
about the attempts it holds (started, output, finished, delivered) and losing the attempts of a
worker that is gone. Every report is checked against the attempt it names: a stale one changes
nothing."""

from __future__ import annotations

import dataclasses
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
from gridrun.output import Mark
from gridrun.store import Applied, Finished, NoticeKind, Output, Started, WorkerReport
from gridrun.store import queries as sql
from gridrun.store.relational_tx import Db, Tx
from gridrun.store.rows import (
    attempt_key,
    describe,
    kept_marks,
    marks_from_json,
    marks_to_json,
    task_from_row,
)
from gridrun.store.task_steps import TaskSteps


class AttemptVerbs:
    def __init__(self, db: Db, steps: TaskSteps) -> None:
        self._db = db
        self._steps = steps

    async def record_start(self, ref: AttemptRef, worker_id: str, started_at: int) -> bool:
        return await self._db.write(lambda tx: self._start(tx, ref, worker_id, started_at))

    async def append_output(
        self,
        ref: AttemptRef,
        worker_id: str,
        chunks: Sequence[tuple[Stream, int, bytes]],
        cap: int,
        marks: Sequence[Mark] = (),
    ) -> bool:
        return await self._db.write(lambda tx: self._append(tx, ref, worker_id, chunks, cap, marks))

    async def record_reports(
        self, worker_id: str, reports: Sequence[WorkerReport], cap: int, now: int
    ) -> list[Applied]:
        async def apply(tx: Tx) -> list[Applied]:
            # the attempts this batch names, each read (and locked) once: a batch usually
            # holds an attempt's Started and its Finished, or its output and its Finished
            known: dict[AttemptRef, Task | None] = {}
            results = []
            for report in reports:
                ref = report.ref
                if ref not in known:
                    known[ref] = await self._steps.held(tx, ref, worker_id)
                task = known[ref]
                match report:
                    case Started(started_at=at):
                        if task is not None:
                            known[ref] = await self._started(tx, task, at)
                        results.append(Applied(task=None, applied=task is not None))
                    case Output(chunks=chunks, marks=marks):
                        if task is not None:
                            await self._output(tx, ref, chunks, cap, marks)
                        results.append(Applied(task=None, applied=task is not None))
                    case Finished(report=ended):
                        known[ref] = None  # (the attempt is over: a second Finished is stale)
                        results.append(await self._settle(tx, task, ended, now))
            return results

        return await self._db.write(apply)

    async def _start(self, tx: Tx, ref: AttemptRef, worker_id: str, started_at: int) -> bool:
        task = await self._steps.held(tx, ref, worker_id)
        if task is None:
            return False
        await self._started(tx, task, started_at)
        return True

    async def _started(self, tx: Tx, task: Task, started_at: int) -> Task:
        """The held attempt has started (a second Started changes nothing): the task now."""
        if task.state is not TaskState.ASSIGNED:
            return task
        state = transition(task.state, TaskState.RUNNING)
        await tx.run(sql.START, str(state), started_at, task.id)
        await tx.run(sql.START_ATTEMPT, str(state), started_at, *attempt_key(task.ref))
        await self._steps.notice(tx, NoticeKind.TASK, task.id)
        return dataclasses.replace(task, state=state, started_at=started_at)

    async def _append(
        self,
        tx: Tx,
        ref: AttemptRef,
        worker_id: str,
        chunks: Sequence[tuple[Stream, int, bytes]],
        cap: int,
        marks: Sequence[Mark] = (),
    ) -> bool:
        if await self._steps.held(tx, ref, worker_id) is None:
            return False
        await self._output(tx, ref, chunks, cap, marks)
        return True

    async def _output(
        self,
        tx: Tx,
        ref: AttemptRef,
        chunks: Sequence[tuple[Stream, int, bytes]],
        cap: int,
        marks: Sequence[Mark] = (),
    ) -> None:
        """Append output to the held attempt's streams (kept within `cap` bytes each), and
        the marks of the runs it begins (the order across streams: gridrun.output)."""
        rows = await tx.all(sql.SELECT_OUTPUT, ref.task_id)
        streams = {s: StreamOutput(bytes(d), t) for s, d, t, _ in rows}
        runs = {s: marks_from_json(m) for s, _, _, m in rows}
        n = max((mark[0] for kept in runs.values() for mark in kept), default=0)
        begun = {(m.stream, m.offset): m.at for m in marks}
        for stream, offset, data in chunks:
            before = streams.get(stream, StreamOutput())
            streams[stream] = before.append(offset, data, cap)
            at = begun.get((stream, offset))
            if at is not None and offset + len(data) > before.total:  # (not a re-sent chunk)
                n += 1
                runs.setdefault(stream, []).append([n, max(offset, before.total), at])
        await tx.many(
            sql.UPSERT_OUTPUT,
            [
                (ref.task_id, s, out.data, out.total,
                 marks_to_json(kept_marks(runs.get(s, []), out.dropped)))
                for s, out in streams.items()
            ],
        )  # fmt: skip
        await self._steps.notice(tx, NoticeKind.TASK, ref.task_id)

    async def _end_attempt(
        self, tx: Tx, task: Task, ended: TaskState, report: Report, now: int
    ) -> Task:
        """Record how the current attempt ended; move the task on (maybe back to the queue).
        Returns the task as its row now is (made here, not read again)."""
        ref = task.ref
        finished_at = report.finished_at or now
        error = report.error or None
        used = report.usage or Usage()
        await tx.run(
            sql.END_ATTEMPT, str(ended), report.started_at, finished_at, report.exit_code,
            report.signal, error, used.cpu_s, used.peak_memory_bytes, used.io_read_bytes,
            used.io_write_bytes, *attempt_key(ref),
        )  # fmt: skip
        await self._steps.notice(tx, NoticeKind.TASK, task.id)
        if ended is TaskState.QUEUED:  # nothing ran (no free slot): back in line, not a try
            state = transition(task.state, ended)
            await tx.run(sql.REQUEUE, str(state), 0, error, task.id)
            await self._steps.notice(tx, NoticeKind.QUEUED)
            return _requeued(task, state, None, error)
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
            not_before = now + round(delay * 1000)
            await tx.run(sql.REQUEUE, str(state), not_before, note, task.id)
            return _requeued(task, state, not_before, note)
        followed = await tx.one(
            sql.FINISH, str(state), report.started_at, finished_at, report.exit_code,
            report.signal, error, used.cpu_s, used.peak_memory_bytes, task.id,
        )  # fmt: skip
        if followed is not None and followed[0]:
            await self._steps.ended(tx, task.id, state, now)
        measured = used.cpu_s is not None or used.peak_memory_bytes is not None
        return dataclasses.replace(
            task,
            state=state,
            started_at=task.started_at if report.started_at is None else report.started_at,
            finished_at=finished_at,
            exit_code=report.exit_code,
            signal=report.signal,
            error=error,
            usage=Usage(cpu_s=used.cpu_s, peak_memory_bytes=used.peak_memory_bytes)
            if measured
            else None,
        )

    async def record_finish(
        self, ref: AttemptRef, worker_id: str, report: Report, now: int
    ) -> Applied:
        async def finish(tx: Tx) -> Applied:
            return await self._settle(tx, await self._steps.held(tx, ref, worker_id), report, now)

        return await self._db.write(finish)

    async def _settle(self, tx: Tx, task: Task | None, report: Report, now: int) -> Applied:
        """End the held attempt as `report` says (None: the report was stale)."""
        if task is None:
            return Applied(task=None, applied=False)
        ended = state_after(report)
        if ended is TaskState.QUEUED and task.cancel_requested:
            ended = TaskState.CANCELLED
        return Applied(task=await self._end_attempt(tx, task, ended, report, now), applied=True)

    async def mark_delivered(self, ref: AttemptRef, worker_id: str, now: int) -> bool:
        async def deliver(tx: Tx) -> bool:
            task = await self._steps.held(tx, ref, worker_id)
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
            await self._steps.ended(tx, ref.task_id, state, now)
            await self._steps.notice(tx, NoticeKind.TASK, ref.task_id)
            return True

        return await self._db.write(deliver)

    async def mark_lost(
        self, worker_id: str, keep: Sequence[AttemptRef], now: int, reason: str
    ) -> list[Task]:
        kept = set(keep)

        async def lose(tx: Tx) -> list[Task]:
            lost: list[Task] = []
            for row in await tx.all(self._steps.select_active() + self._db.dialect.lock, worker_id):
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
                report = Report(Outcome.EXITED, error=why)
                lost.append(await self._end_attempt(tx, task, ended, report, now))
            return lost

        return await self._db.write(lose)

    async def active_attempts(self, worker_id: str) -> list[Task]:
        async def read(tx: Tx) -> list[Task]:
            return [task_from_row(r) for r in await tx.all(self._steps.select_active(), worker_id)]

        return await self._db.read(read)


def _requeued(task: Task, state: TaskState, not_before: int | None, error: str | None) -> Task:
    """The task as REQUEUE leaves its row: back in the queue, held by nobody."""
    return dataclasses.replace(
        task,
        state=state,
        worker_id=None,
        assigned_at=None,
        started_at=None,
        not_before=not_before,
        error=error,
    )
