"""How many workers each allocation queue is wanted for, and when an allocation's end is a
failure. Pure: the allocator (core.allocator) reads the queued tasks, the workers and the
allocations, and acts on what these say."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

from gridrun.allocating import Allocation, AllocQueue, QueueConfig, allocation_of
from gridrun.dispatching import Candidate
from gridrun.master.core import fairness
from gridrun.master.core.alloc_fit import first_taker
from gridrun.model import WorkerInfo
from gridrun.resources import labels_match

BACKOFF_CAP_S = 600.0


def demand(
    candidates: Sequence[Candidate],
    queues: Sequence[AllocQueue],
    workers: Sequence[WorkerInfo],
    allocations: Sequence[Allocation],
    gone: Collection[str] = (),
) -> dict[str, int]:
    """Queue name -> the tasks its workers are wanted for: queued tasks that no live worker
    with a free slot takes now (each free slot absorbs one) and no worker on its way will
    (an allocation's not joined yet, or away a moment: not `gone`, its lease not lapsed),
    each counted for the plainest queue that could take it."""
    free = {i: w.slots - w.running - w.assigned for i, w in enumerate(workers)}
    free = {i: n for i, n in free.items() if n > 0}
    wanted: Counter[str] = Counter()
    for candidate in candidates:
        if candidate.worker is not None or fairness.is_waiting(candidate.unschedulable):
            continue  # pinned (a broadcast's), or held by a quota or concurrency key
        taker = next(
            (
                i
                for i in free
                if labels_match(candidate.labels, workers[i].labels, candidate.selector)
            ),
            None,
        )
        if taker is not None:  # a free slot takes it now
            free[taker] -= 1
            if not free[taker]:
                del free[taker]
            continue
        queue = first_taker(queues, candidate)
        if queue is not None:
            wanted[queue.name] += 1
    online = Counter(allocation_of(w.id) for w in workers)
    need = {}
    for queue in queues:
        coming = sum(
            (a.workers if a.connected_at is None else max(0, a.workers - online[a.id]))
            * queue.config.slots_each
            for a in allocations
            if a.queue == queue.name and a.state.active and a.id not in gone
        )
        need[queue.name] = wanted[queue.name] - coming  # below 0: more coming than wanted
    return need


EARLY_END_S = 60.0  # an allocation whose workers are all gone sooner after joining failed


def early_ms(config: QueueConfig) -> float:
    """How soon after joining an allocation's end is a failure: a minute, or half the time
    its workers would take to leave by themselves (idle, or at their time limit) where that
    is less (a worker that leaves at its limit is seen gone a moment after it)."""
    return min(EARLY_END_S, config.idle_timeout_s / 2, config.worker_time_s / 2) * 1000


def backoff_ms(failures: int, interval_s: float) -> int:
    return round(min(interval_s * 2.0 ** max(failures - 1, 0), BACKOFF_CAP_S) * 1000)
