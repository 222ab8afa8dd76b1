"""Tasks that run after others (`after`): steps of the store's verbs, inside their transaction.

A task with `after` is stored `waiting` (or `queued` if all it waits for already succeeded, or
`skipped` if one already ended otherwise). When a task ends, `ended` moves on the tasks waiting
for it: to `queued` once everything they wait for succeeded, to `skipped` (and on down the
graph) as soon as one did not. Each dependent's row is locked before its prerequisites are
counted, so two masters finishing two prerequisites at once cannot both leave it waiting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from graphlib import TopologicalSorter

from gridrun.errors import InvalidSpec
from gridrun.model import TERMINAL, TaskState, transition
from gridrun.store import NoticeKind
from gridrun.store import queries as sql
from gridrun.store.relational_tx import TASKS_BY_ID, Dialect, Tx, marks

Notify = Callable[[Tx, NoticeKind, str], Awaitable[None]]


async def link(
    tx: Tx, lock: str, after_of: dict[str, tuple[str, ...]], now: int, notify: Notify
) -> dict[str, TaskState]:
    """Record what each new task (id -> the ids it runs after, in dependency order) waits
    for; return the state each starts in when that is not `queued`."""
    new = set(after_of)
    outside = sorted({a for after in after_of.values() for a in after if a not in new})
    known: dict[str, TaskState] = {}
    if outside:
        query = sql.SELECT_STATES.format(marks=marks(len(outside)))
        known = {r[0]: TaskState(r[1]) for r in await tx.all(query + lock, *outside)}
        missing = [a for a in outside if a not in known]
        if missing:
            raise InvalidSpec(
                f"after names {missing[0]!r}: no task has that id, and no task of this batch"
                " that name"
            )
    await tx.many(
        sql.INSERT_DEP, [(task_id, a) for task_id, after in after_of.items() for a in after]
    )
    starts: dict[str, TaskState] = {}
    for task_id, after in after_of.items():  # dependency order: what it waits for is known
        if not after:
            continue
        states = [starts.get(a, known.get(a, TaskState.QUEUED)) for a in after]
        failed = next((a for a, st in zip(after, states, strict=True) if _blocks(st)), None)
        if failed is not None:
            why = f"task {failed} ended {starts.get(failed, known.get(failed))}"
            await _skip(tx, task_id, why, now, notify)
            starts[task_id] = TaskState.SKIPPED
        elif any(st is not TaskState.SUCCEEDED for st in states):
            await tx.run(sql.SET_STATE, str(TaskState.WAITING), task_id)
            starts[task_id] = TaskState.WAITING
    return starts


def _blocks(state: TaskState) -> bool:
    return state in TERMINAL and state is not TaskState.SUCCEEDED


async def _skip(tx: Tx, task_id: str, why: str, now: int, notify: Notify) -> None:
    await tx.run(sql.END, str(TaskState.SKIPPED), now, f"skipped: {why}", task_id)
    await notify(tx, NoticeKind.TASK, task_id)


async def ended(
    tx: Tx, dialect: Dialect, task_id: str, state: TaskState, now: int, notify: Notify
) -> None:
    """`task_id` just became terminal in `state`: release or skip the tasks waiting for it."""
    frontier: list[tuple[str, TaskState]] = [(task_id, state)]
    # from the finished task's deps to its dependents: never a read of every waiting task
    query = sql.SELECT_WAITING_DEPENDENTS.format(index=dialect.use_index(TASKS_BY_ID))
    while frontier:
        done, done_state = frontier.pop()
        for (dependent,) in await tx.all(query + dialect.lock, done):
            if done_state is not TaskState.SUCCEEDED:
                transition(TaskState.WAITING, TaskState.SKIPPED)
                await _skip(tx, dependent, f"task {done} ended {done_state}", now, notify)
                frontier.append((dependent, TaskState.SKIPPED))
                continue
            row = await tx.one(sql.COUNT_UNMET, dependent)
            assert row is not None
            if row[0] == 0:
                state_now = transition(TaskState.WAITING, TaskState.QUEUED)
                await tx.run(sql.SET_STATE, str(state_now), dependent)
                await notify(tx, NoticeKind.TASK, dependent)
                await notify(tx, NoticeKind.QUEUED, "")


def in_order(ids: Sequence[str], after: Sequence[tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """The batch's tasks with what each runs after, each after everything it waits for in the
    batch (a batch has no cycle: `spec.resolve_after` refused them)."""
    waits = dict(zip(ids, after, strict=True))
    graph = {task_id: [a for a in w if a in waits] for task_id, w in waits.items()}
    return {task_id: waits[task_id] for task_id in TopologicalSorter(graph).static_order()}
