"""What the dashboard's charts draw: the grid sampled every step for the last hour or so.

Each sample holds what the grid had then (tasks queued, assigned and running, slots of
the live workers and how many were in use: read from the store, so the same whichever
master is asked) and what ended in the step before it (tasks finished, of them failed, and
the dispatch latency and run duration of each, counted in the buckets of the Prometheus
histograms). What ended is what *this* master recorded: on a grid of several masters each
one's charts count the reports its own workers sent (the Prometheus series, summed over
the masters, are the grid's whole). Kept in memory: a restarted master starts a new history.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gridrun.model import Task, TaskState, WorkerInfo, WorkerState

KEEP = 720  # samples: an hour at the default step of 5 s
# a task that ended this way failed (cancelled, expired and skipped did not: they were let go)
FAILURES = frozenset({TaskState.FAILED, TaskState.TIMED_OUT, TaskState.LOST, TaskState.REJECTED})


def bucket_of(bounds: Sequence[float], value: float) -> int:
    """The index of the first bound at or above `value` (len(bounds): above them all),
    as Prometheus counts an observation in its `le` buckets."""
    for index, bound in enumerate(bounds):
        if value <= bound:
            return index
    return len(bounds)


@dataclass(slots=True)
class Sample:
    at_ms: int
    queued: int = 0
    assigned: int = 0  # sent to a worker, not started yet (on their way, or held for a slot)
    running: int = 0
    slots: int = 0  # of the workers online or draining
    slots_used: int = 0
    finished: int = 0  # tasks that ended in the step before `at_ms`
    failed: int = 0  # of them, ended failed, timed out, lost or rejected
    latency: list[int] = field(default_factory=list)  # per bucket of History.latency_bounds
    duration: list[int] = field(default_factory=list)  # per bucket of History.duration_bounds


class History:
    def __init__(
        self,
        latency_bounds: Sequence[float],
        duration_bounds: Sequence[float],
        step_s: float = 5.0,
        keep: int = KEEP,
    ) -> None:
        self.step_s = step_s
        self.latency_bounds = tuple(latency_bounds)
        self.duration_bounds = tuple(duration_bounds)
        self.samples: deque[Sample] = deque(maxlen=keep)
        self._open = self._new(0)  # what ends until the next sample

    def _new(self, at_ms: int) -> Sample:
        return Sample(
            at_ms,
            latency=[0] * (len(self.latency_bounds) + 1),
            duration=[0] * (len(self.duration_bounds) + 1),
        )

    def settled(self, task: Task) -> None:
        """A task reached its terminal state (counted in the step that is open)."""
        step = self._open
        step.finished += 1
        step.failed += task.state in FAILURES
        if task.started_at is not None:
            latency = max(0, task.started_at - task.created_at) / 1000
            step.latency[bucket_of(self.latency_bounds, latency)] += 1
            if task.finished_at is not None:
                ran = max(0, task.finished_at - task.started_at) / 1000
                step.duration[bucket_of(self.duration_bounds, ran)] += 1

    def sample(
        self, at_ms: int, tasks: Mapping[TaskState, int], workers: Sequence[WorkerInfo]
    ) -> Sample:
        """Close the open step with the grid as it is now, keep it, and open the next."""
        kept = self.now(at_ms, tasks, workers)
        self.samples.append(kept)
        self._open = self._new(0)
        return kept

    def now(
        self, at_ms: int, tasks: Mapping[TaskState, int], workers: Sequence[WorkerInfo]
    ) -> Sample:
        """The open step as a sample taken now (not kept): the charts' live end."""
        live = [w for w in workers if w.state is not WorkerState.OFFLINE]
        step = self._open
        return Sample(
            at_ms,
            queued=tasks.get(TaskState.QUEUED, 0),
            assigned=tasks.get(TaskState.ASSIGNED, 0),
            running=tasks.get(TaskState.RUNNING, 0),
            slots=sum(w.slots for w in live),
            slots_used=sum(w.running for w in live),
            finished=step.finished,
            failed=step.failed,
            latency=list(step.latency),
            duration=list(step.duration),
        )

    def window(self, live: Sample) -> list[Sample]:
        """The samples kept, oldest first, then `live`."""
        return [*self.samples, live]
