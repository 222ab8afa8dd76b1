"""Placement policy: which worker gets which queued task. Pure functions over data.

Candidates arrive in queue order (priority, then FIFO). Each goes to an eligible worker — labels
and selector terms match, a slot free, the CPUs, memory and GPUs it asks for free, fewer tasks of
its class than the worker's cap — and among those to the least loaded (spread), or, for a task
that asks to pack, to the busiest that has room. Legacy (article) workers report nothing back,
so they are used only for tasks they can represent and only when no gridrun worker can take the
task now.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gridrun.dispatching import Candidate, Placed
from gridrun.model import Placement, WorkerInfo, capacity_of
from gridrun.resources import NO_RESOURCES, Resources, labels_match


@dataclass(slots=True)
class Capacity:
    """A connected worker as placement sees it; `used` grows as tasks are placed."""

    worker_id: str
    labels: Mapping[str, str]
    slots: int
    used: int
    legacy: bool = False
    # assignments it holds beyond its slots, to start as one frees (see worker --prefetch):
    # a place, but any free slot elsewhere comes first
    prefetch: int = 0
    has: Resources | None = None  # what the worker has; None: it said nothing (old worker)
    taken: Resources = NO_RESOURCES  # asked for by the attempts it holds
    max_tasks: Mapping[str, int] = field(default_factory=dict)  # class -> at most at once
    by_class: dict[str, int] = field(default_factory=dict)  # class -> attempts it holds
    takes_stdin: bool = True  # it feeds a task's stdin (a worker older than that: False)
    takes_script: bool = True  # it runs a task's script (likewise)
    takes_files: bool = True  # it stages inputs and collects files (likewise)
    # seconds until it leaves at its time limit (worker --time-limit; None: it has none): it
    # takes only tasks whose timeout ends before then
    time_left: float | None = None

    @property
    def free(self) -> int:
        return max(self.slots + self.prefetch - self.used, 0)

    @property
    def holding(self) -> int:
        """1 when what it would take next waits for a slot (prefetched), else 0."""
        return int(self.used >= self.slots)

    def room(self, request: Resources) -> bool:
        if not request:
            return True
        if self.has is None:
            return False
        free = Resources(
            self.has.cpu - self.taken.cpu,
            self.has.memory_mb - self.taken.memory_mb,
            self.has.gpus - self.taken.gpus,
        )
        return request.fits(free)


def _load(worker: Capacity) -> tuple[int, int, float, int, str]:
    # spread: legacy last; a free slot before a prefetch place; then the lowest fraction of
    # slots in use; then the most free slots
    return (
        int(worker.legacy),
        worker.holding,
        worker.used / worker.slots,
        -worker.free,
        worker.worker_id,
    )


def _fullness(worker: Capacity) -> tuple[int, int, float, str]:
    # pack: legacy last; a free slot before a prefetch place; then the highest fraction of
    # slots in use (fill it before the next)
    return (int(worker.legacy), worker.holding, -worker.used / worker.slots, worker.worker_id)


def eligible(candidate: Candidate, worker: Capacity) -> bool:
    if worker.free <= 0 or not _suits(candidate, worker):
        return False
    limit = worker.max_tasks.get(candidate.task_class or "")
    if limit is not None and worker.by_class.get(candidate.task_class or "", 0) >= limit:
        return False
    return worker.room(candidate.resources)


def could_run(candidate: Candidate, worker: Capacity) -> bool:
    """The worker could take the task once a place of its frees (what it holds aside)."""
    if candidate.resources and (worker.has is None or not candidate.resources.fits(worker.has)):
        return False
    return _suits(candidate, worker)


def _suits(candidate: Candidate, worker: Capacity) -> bool:
    """What a worker is, whatever it holds: legacy or not, what it can feed a task, its id,
    its labels."""
    if worker.legacy and not candidate.legacy_ok:
        return False
    if candidate.stdin and not worker.takes_stdin:
        return False  # it would run with stdin closed
    if candidate.script and not worker.takes_script:
        return False  # it would run the arguments as the program
    if candidate.files and not worker.takes_files:
        return False  # it would run without its inputs, and collect nothing
    if candidate.worker is not None and candidate.worker != worker.worker_id:
        return False
    if not fits_in_time(candidate, worker.time_left):
        return False
    return labels_match(candidate.labels, worker.labels, candidate.selector)


def fits_in_time(candidate: Candidate, time_left: float | None) -> bool:
    """A task ends before a worker leaves at its time limit: it has a timeout, and the
    timeout fits in what is left (a task without one could outlast it, and be killed)."""
    if time_left is None:
        return True
    return candidate.timeout_s is not None and candidate.timeout_s <= time_left


def _plain(candidate: Candidate) -> bool:
    """Asks nothing of a worker but a slot: any worker with one may take it."""
    return not (
        candidate.labels
        or candidate.selector
        or candidate.resources
        or candidate.worker is not None
        or candidate.task_class is not None
        or candidate.stdin  # (a worker must feed it)
        or candidate.script
        or candidate.files
    )


class _Ranking:
    """The workers ordered by one key (spread or pack), kept as a heap: the best worker for a
    plain task is found in O(log n), not by looking at every worker. An entry made before the
    worker last took a task is stale and skipped."""

    def __init__(
        self, pool: list[Capacity], versions: list[int], key: Callable[[Capacity], Any]
    ) -> None:
        self._key = key
        self._heap = [(key(w), i, versions[i]) for i, w in enumerate(pool) if w.free > 0]
        heapq.heapify(self._heap)

    def best(self, pool: list[Capacity], versions: list[int], legacy_ok: bool) -> int | None:
        while self._heap:
            _, i, version = self._heap[0]
            worker = pool[i]
            if version != versions[i] or worker.free <= 0:
                heapq.heappop(self._heap)
                continue
            if worker.legacy and not legacy_ok:
                return None  # legacy workers come last: no other worker has a free slot
            return i
        return None

    def update(self, pool: list[Capacity], i: int, version: int) -> None:
        if pool[i].free > 0:
            heapq.heappush(self._heap, (self._key(pool[i]), i, version))


class Placer:
    """Places tasks one at a time on a pool of workers, using it up; its rankings (a heap per
    placement) are made once and kept up to date, so placing k plain tasks on W workers costs
    O(W + k log W), not O(k W)."""

    def __init__(self, workers: Iterable[Capacity]) -> None:
        self.pool = [w for w in workers if w.slots > 0]
        # a worker that leaves at a time limit takes only tasks that fit: no task is plain
        self._timed = any(w.time_left is not None for w in self.pool)
        self._versions = [0] * len(self.pool)
        self.free = sum(w.free for w in self.pool)
        self._rankings: dict[Placement, _Ranking] = {}  # made when first needed

    def place(self, candidate: Candidate) -> str | None:
        """The worker the candidate goes to (its capacity taken), or None if none has room."""
        if self.free <= 0:
            return None
        pool, versions = self.pool, self._versions
        key = _fullness if candidate.placement is Placement.PACK else _load
        if _plain(candidate) and not self._timed:
            if candidate.placement not in self._rankings:
                self._rankings[candidate.placement] = _Ranking(pool, versions, key)
            chosen = self._rankings[candidate.placement].best(pool, versions, candidate.legacy_ok)
        else:
            options = [i for i, w in enumerate(pool) if eligible(candidate, w)]
            chosen = min(options, key=lambda i: key(pool[i])) if options else None
        if chosen is None:
            return None
        best = pool[chosen]
        best.used += 1
        self.free -= 1
        best.taken = best.taken + candidate.resources
        if candidate.task_class is not None:
            best.by_class[candidate.task_class] = best.by_class.get(candidate.task_class, 0) + 1
        versions[chosen] += 1
        for ranking in self._rankings.values():
            ranking.update(pool, chosen, versions[chosen])
        return best.worker_id


def place(candidates: Iterable[Candidate], workers: Iterable[Capacity]) -> Placed:
    """Return (candidate, worker_id) pairs; candidates that fit nowhere now are left out."""
    placer = Placer(workers)
    placed: Placed = []
    for candidate in candidates:
        if placer.free <= 0:
            break
        worker = placer.place(candidate)
        if worker is not None:
            placed.append((candidate, worker))
    return placed


def why_unschedulable(
    candidate: Candidate, workers: Iterable[WorkerInfo], without_files: Collection[str] = ()
) -> str | None:
    """Why no live worker could ever take this task (however idle), or None if one could.
    `without_files`: the ids of live workers that take no task with files (older ones)."""
    live = [w for w in workers if w.slots > 0]
    if candidate.files and without_files:
        older = sorted(w.id for w in live if w.id in without_files)
        live = [w for w in live if w.id not in without_files]
        if not live:
            shown = ", ".join(older[:3]) + (f" and {len(older) - 3} more" if len(older) > 3 else "")
            return (
                f"no live worker takes tasks with files (inputs or --collect): {shown} run an"
                " older gridrun, which would run it without them"
            )
    if candidate.worker is not None:
        live = [w for w in live if w.id == candidate.worker]
        if not live:
            return f"worker {candidate.worker} (the only one it may run on) is not live"
    if not candidate.labels and not candidate.selector:
        matching = live  # (checked for the head of the queue every second: no scan for this)
    else:
        matching = [w for w in live if labels_match(candidate.labels, w.labels, candidate.selector)]
    if not matching:
        wanted = [f"{k}={v}" for k, v in candidate.labels.items()]
        wanted += [str(t) for t in candidate.selector]
        return f"no live worker matches {', '.join(wanted)}" if live else "no live worker"
    if not candidate.resources:
        return None
    gaps = []
    for worker in matching:
        gap = candidate.resources.shortfall(capacity_of(worker))
        if gap is None:
            return None
        gaps.append(f"{worker.id} lacks {gap}")
    shown = "; ".join(gaps[:3]) + (f"; and {len(gaps) - 3} more" if len(gaps) > 3 else "")
    return f"no live worker has what it asks: {shown}"
