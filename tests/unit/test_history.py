"""The dashboard's history: samples of the grid and what ended between them (pure logic)."""

from __future__ import annotations

from dataclasses import replace

from gridrun.master.core.history import History, bucket_of
from gridrun.model import Task, TaskState, WorkerInfo, WorkerState
from gridrun.spec import make_spec


def test_a_value_on_a_bound_counts_in_that_bucket_as_prometheus_does() -> None:
    bounds = (0.1, 1.0, 10.0)
    assert [bucket_of(bounds, v) for v in (0, 0.1, 0.11, 1.0, 10.0, 10.5)] == [0, 0, 1, 1, 2, 3]


def test_each_sample_holds_the_grid_then_and_what_ended_since_the_one_before() -> None:
    history = History((1.0, 10.0), (1.0, 10.0), step_s=5, keep=3)
    task = Task(id="t", seq=1, spec=make_spec(cmd="true"), state=TaskState.QUEUED, created_at=0)
    ran = replace(task, created_at=0, started_at=500, finished_at=20_500)
    history.settled(replace(ran, state=TaskState.SUCCEEDED))
    history.settled(replace(ran, state=TaskState.TIMED_OUT, started_at=5_000))
    history.settled(replace(task, state=TaskState.CANCELLED, started_at=None))  # never ran
    workers = [
        WorkerInfo("w1", "h", {}, slots=4, state=WorkerState.ONLINE, running=3),
        WorkerInfo("w2", "h", {}, slots=2, state=WorkerState.OFFLINE),
    ]
    counts = {TaskState.QUEUED: 7, TaskState.ASSIGNED: 2, TaskState.RUNNING: 3}
    first = history.sample(1_000, counts, workers)
    assert (first.queued, first.assigned, first.running) == (7, 2, 3)
    assert (first.slots, first.slots_used) == (4, 3)  # an offline worker's slots are gone
    assert (first.finished, first.failed) == (3, 1)  # cancelled is not a failure
    assert first.latency == [1, 1, 0]  # 0.5 s and 5 s; the cancelled one never started
    assert first.duration == [0, 0, 2]  # 20 s and 15.5 s
    live = history.now(2_000, {}, [])
    assert (live.finished, live.queued, live.latency) == (0, 0, [0, 0, 0])  # a new step
    for at in (3_000, 4_000, 5_000):
        history.sample(at, {}, [])
    assert [s.at_ms for s in history.window(live)] == [3_000, 4_000, 5_000, 2_000]  # kept 3
