"""The master's parts, each on its own: built from exactly what it uses (a real SQLite store in
a temporary directory, a clock the test moves, the `Signals` the parts share), with no master,
no sockets and no other part behind them (liveness: beside the few parts it calls)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gridrun.dispatching import Quota
from gridrun.master.core.admission import Admission
from gridrun.master.core.config import ServiceConfig
from gridrun.master.core.dispatcher import Dispatcher
from gridrun.master.core.liveness import Liveness
from gridrun.master.core.metrics import Metrics
from gridrun.master.core.pacing import Pacing
from gridrun.master.core.retention import Retention
from gridrun.master.core.schedules import Schedules
from gridrun.master.core.sealing import Sealer
from gridrun.master.core.sessions import AssignCmd, CancelCmd, Sessions, WorkerSession
from gridrun.master.core.signals import Signals
from gridrun.master.core.trust import Trust
from gridrun.master.core.worker_streams import WorkerStreams
from gridrun.model import AttemptRef, Outcome, Report, TaskState, WorkerInfo, WorkerState
from gridrun.spec import make_spec
from gridrun.store import NewTask, Store
from gridrun.store.sqlite import SqliteStore
from tests.helpers import claim


class ManualClock:
    """Both clocks moved by hand (a fake is fine for a clock)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0  # seconds

    def now_ms(self) -> int:
        return round(self.now * 1000)

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = SqliteStore(tmp_path / "gridrun.db", origin="m1")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def connected(worker_id: str = "w1", slots: int = 1) -> WorkerSession:
    return WorkerSession(
        worker_id=worker_id, hostname="h", labels={}, slots=slots, last_seen=0.0, reconciled=True
    )


async def join(store: Store, session: WorkerSession, sessions: Sessions, now: int) -> None:
    """What WorkerStreams.hello leaves: the session held here, the worker leased to us."""
    sessions.add(session)
    await store.workers.upsert_worker(
        WorkerInfo(
            id=session.worker_id, hostname="h", labels={}, slots=session.slots,
            state=WorkerState.ONLINE, version="t", legacy=False, connected_at=now, last_seen=now,
        ),
        lease_until=now + 60_000,
    )  # fmt: skip


async def queue(store: Store, *ids: str, now: int, owner: str | None = None) -> None:
    spec = make_spec(cmd="true", submitted_by=owner)
    await store.tasks.add_tasks([NewTask(i, spec) for i in ids], now=now)


async def test_dispatch_claims_a_queued_task_for_a_free_worker_and_sends_its_assign(
    store: Store,
) -> None:
    clock, sessions = ManualClock(), Sessions()
    signals = Signals(clock, Metrics())
    dispatcher = Dispatcher(store, clock, ServiceConfig(), sessions, signals, Sealer.ephemeral())
    session = connected(slots=1)
    await join(store, session, sessions, clock.now_ms())
    await queue(store, "a", "b", now=clock.now_ms())

    assert await dispatcher.dispatch() == 1  # one slot: one task
    command = await asyncio.wait_for(session.next_command(), 1)
    assert isinstance(command, AssignCmd)
    assert command.task.id == "a"
    assert (await store.tasks.get_task("a")).state is TaskState.ASSIGNED
    assert (await store.tasks.get_task("b")).state is TaskState.QUEUED
    assert list(session.inflight) == [AttemptRef("a", 1)]
    assert await dispatcher.dispatch() == 0  # the slot is held now


async def test_dispatch_puts_back_a_task_claimed_for_a_worker_that_left_meanwhile(
    store: Store,
) -> None:
    clock, sessions = ManualClock(), Sessions()
    signals = Signals(clock, Metrics())
    dispatcher = Dispatcher(store, clock, ServiceConfig(), sessions, signals, Sealer.ephemeral())
    session = connected()
    await join(store, session, sessions, clock.now_ms())
    await queue(store, "a", now=clock.now_ms())
    (task,) = await claim(store, [("a", "w1")], clock.now_ms())
    sessions.remove(session)  # gone before its Assign could be sent

    signals.dispatch_wanted.clear()
    await dispatcher._send_assignment(task)
    assert (await store.tasks.get_task("a")).state is TaskState.QUEUED  # not a try, nothing lost
    assert signals.dispatch_wanted.is_set()  # and dispatch looks again


async def test_a_worker_that_keeps_missing_deadlines_is_quarantined_and_told_to_stop(
    store: Store,
) -> None:
    clock, sessions = ManualClock(), Sessions()
    config = ServiceConfig(quarantine_after=2, quarantine_s=60.0)
    signals = Signals(clock, Metrics())
    trust = Trust(store, clock, config, sessions, signals)
    session = connected(slots=2)
    await join(store, session, sessions, clock.now_ms())
    await queue(store, "a", "b", now=clock.now_ms())
    await claim(store, [("a", "w1"), ("b", "w1")], clock.now_ms())

    await trust.missed_deadline(session, AttemptRef("a", 1), "not started within 60s")
    assert session.quarantined is None  # one miss: not yet
    assert (await store.tasks.get_task("a")).state is TaskState.LOST
    await trust.missed_deadline(session, AttemptRef("b", 1), "not started within 60s")
    assert session.quarantined is not None
    assert "missed 2 deadlines" in session.quarantined
    assert trust.reason_for("w1") == session.quarantined
    commands = [await asyncio.wait_for(session.next_command(), 1) for _ in range(2)]
    assert [c.ref for c in commands if isinstance(c, CancelCmd)] == [
        AttemptRef("a", 1),
        AttemptRef("b", 1),
    ]
    clock.advance(61.0)  # the quarantine runs out
    assert trust.quarantine_reason(session) is None
    assert session.quarantined is None


async def test_admission_counts_a_batch_against_its_owners_quota(store: Store) -> None:
    admission = Admission(store, max_queued=1_000)
    await store.dispatch.set_quota(Quota("owner", "alice", max_queued=2))
    await queue(store, "a", now=1, owner="alice")
    alice, bob = (
        make_spec(cmd="true", submitted_by="alice"),
        make_spec(cmd="true", submitted_by="bob"),
    )

    answers = await admission.room([alice, bob, alice])
    assert answers[:2] == [None, None]  # alice's second fits; bob has no quota
    assert answers[2] is not None
    assert "owner alice has 1 tasks queued" in answers[2]


async def test_admission_refuses_what_would_take_the_grid_past_its_limit(store: Store) -> None:
    admission = Admission(store, max_queued=2)
    await queue(store, "a", now=1)
    spec = make_spec(cmd="true")
    assert await admission.room([spec]) == [None]
    answers = await admission.room([spec, spec])
    assert answers[0] is None
    assert answers[1] is not None
    assert "--max-queued" in answers[1]


async def test_retention_deletes_ended_tasks_only_once_they_are_old_enough(store: Store) -> None:
    clock, sessions = ManualClock(), Sessions()
    metrics = Metrics()
    retention = Retention(store.retention, clock, ServiceConfig(), metrics)
    await join(store, connected(), sessions, clock.now_ms())
    await queue(store, "a", "b", now=clock.now_ms())
    await claim(store, [("a", "w1")], clock.now_ms())
    await store.attempts.record_finish(
        AttemptRef("a", 1), "w1", Report(Outcome.EXITED, exit_code=0), clock.now_ms()
    )

    assert await retention.collect(3600, [TaskState.SUCCEEDED]) == 0  # ended just now
    clock.advance(3601)
    assert await retention.collect(3600, [TaskState.SUCCEEDED], dry_run=True) == 1
    assert await retention.collect(3600, [TaskState.SUCCEEDED]) == 1
    assert (await store.tasks.count_by_state()) == {TaskState.QUEUED: 1}  # b was never ended


async def test_liveness_ends_the_attempts_of_a_worker_whose_lease_ran_out_but_not_too_soon(
    store: Store,
) -> None:
    clock, sessions = ManualClock(), Sessions()
    config = ServiceConfig(liveness_timeout_s=10.0)
    metrics = Metrics()
    signals = Signals(clock, metrics)
    pacing = Pacing(config, clock, sessions)
    admission = Admission(store, config.max_queued)
    trust = Trust(store, clock, config, sessions, signals)
    streams = WorkerStreams(store, clock, config, sessions, pacing, trust, signals)
    retention = Retention(store.retention, clock, config, metrics)
    schedules = Schedules(store.schedules, clock, admission, signals)
    liveness = Liveness(
        store, clock, config, sessions, signals, pacing, trust, streams, retention, schedules
    )
    session = connected()
    await join(store, session, sessions, clock.now_ms())  # leased until now + 60 s
    await queue(store, "a", now=clock.now_ms())
    await claim(store, [("a", "w1")], clock.now_ms())
    sessions.remove(session)  # its stream is gone; its lease runs on
    clock.advance(61)  # the lease has run out, but this master started only now...
    liveness.judge_after = clock.monotonic() + config.liveness_timeout_s
    assert await liveness.check() == []  # ...so it has not seen the store healthy long enough
    assert (await store.tasks.get_task("a")).state is TaskState.ASSIGNED
    clock.advance(config.liveness_timeout_s + 1)
    (lost,) = await liveness.check()
    assert (lost.id, lost.state) == ("a", TaskState.LOST)
    assert "w1 was unreachable for more than 10s" in (lost.error or "")
    # and housekeeping ends a queued task past its queue timeout as expired
    spec = make_spec(cmd="true", queue_timeout_s=5)
    await store.tasks.add_tasks([NewTask("q", spec)], now=clock.now_ms())
    clock.advance(6)
    await liveness.housekeeping()
    assert (await store.tasks.get_task("q")).state is TaskState.EXPIRED
