"""Who goes next on a shared grid. Pure: the dispatcher applies it to the heads of the lanes
it read (see DispatchStore.plan_and_claim).

The rule, in order:
1. Priority wins: a task of higher priority goes before any of lower priority, whoever owns
   it.
2. Among tasks of equal priority, the owner with the least running for their share goes next
   (running / share; `--share ci=3` gives `ci` three times the share of an owner with the
   default 1), and among one owner's tasks the oldest. So if A has 5,000 tasks queued and 4
   running, and B submits 10, each slot that frees goes to B until B runs as many as A; with
   shares A=3, B=1, A keeps three slots in four.
3. Limits hold: an owner or a queue at its quota of running tasks, or a concurrency key at its
   limit, waits (and says so in `unschedulable`) while the others go on.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gridrun.dispatching import Active, Candidate, Placed, Quota
from gridrun.master.core import scheduler
from gridrun.master.core.scheduler import Capacity

WAITING = "waiting"  # how a reason given by a limit begins


def is_waiting(reason: str | None) -> bool:
    """Is this `unschedulable` reason a limit's (quota, concurrency), set by dispatch?"""
    return reason is not None and reason.startswith(WAITING)


@dataclass
class Plan:
    placed: Placed = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # task id -> why it waits


@dataclass
class _Running:
    owners: Counter[str]
    queues: Counter[str]
    keys: Counter[str]
    key_limits: Mapping[str, int]
    owner_limits: Mapping[str, int]
    queue_limits: Mapping[str, int]

    def why_waiting(self, task: Candidate) -> str | None:
        """Why a limit holds this task back now, or None."""
        if task.concurrency is not None:
            counted = task.concurrency.counted
            limit = self.key_limits.get(counted, task.concurrency.limit)
            if self.keys[counted] >= limit:
                running = self.keys[counted]
                key = task.concurrency.key
                return f"{WAITING} for concurrency key {key} ({running}/{limit} running)"
        limit_ = self.owner_limits.get(task.owner)
        if limit_ is not None and self.owners[task.owner] >= limit_:
            return f"{WAITING}: owner {task.owner} is at its quota of {limit_} running"
        limit_ = self.queue_limits.get(task.queue)
        if limit_ is not None and self.queues[task.queue] >= limit_:
            return f"{WAITING}: queue {task.queue} is at its quota of {limit_} running"
        return None

    def add(self, task: Candidate) -> None:
        self.owners[task.owner] += 1
        self.queues[task.queue] += 1
        if task.concurrency is not None:
            self.keys[task.concurrency.counted] += 1


def plan(
    heads: Mapping[str, Sequence[Candidate]],
    active: Active,
    quotas: Sequence[Quota],
    capacities: list[Capacity],
    shares: Mapping[str, float],
) -> Plan:
    """Place the heads of the lanes (each in its own order) on the free capacities, by the
    rule in the module docstring; `capacities` are used up as tasks are placed."""
    running = _Running(
        Counter(active.by_owner),
        Counter(active.by_queue),
        Counter(active.by_key),
        active.key_limits,
        {q.name: q.max_running for q in quotas if q.scope == "owner" and q.max_running is not None},
        {q.name: q.max_running for q in quotas if q.scope == "queue" and q.max_running is not None},
    )

    def turn(task: Candidate) -> float:
        return running.owners[task.owner] / shares.get(task.owner, 1.0)

    # (priority first, then the owner's turn, then age), the lane, the index in the lane;
    # an owner's turn changes as it is served, so an entry is checked when it comes up
    heap = [(-t[0].priority, turn(t[0]), t[0].seq, key, 0) for key, t in heads.items() if t]
    heapq.heapify(heap)
    result = Plan()
    placer = scheduler.Placer(capacities)
    while heap and placer.free > 0:
        priority, owner_turn, seq, key, i = heapq.heappop(heap)
        task = heads[key][i]
        if owner_turn != turn(task):
            heapq.heappush(heap, (priority, turn(task), seq, key, i))
            continue
        why = running.why_waiting(task)
        if why is not None:  # the whole lane waits: its tasks share owner, queue and key
            for waiting in heads[key][i:]:
                result.waiting[waiting.task_id] = why
            continue
        worker = placer.place(task)
        if worker is None:
            continue  # no room for this shape any more: nor for the rest of its lane
        result.placed.append((task, worker))
        running.add(task)
        if i + 1 < len(heads[key]):
            following = heads[key][i + 1]
            heapq.heappush(heap, (-following.priority, turn(following), following.seq, key, i + 1))
    return result
