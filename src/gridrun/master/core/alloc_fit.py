"""Could an allocation queue's workers take a task? Pure: a queue's workers have its labels,
its slots and resources (where it says them), and leave at its time limit, so they take only
tasks whose timeout ends before then (worker --time-limit). `QueueBook` holds the queues as
last read, for the reason a queued task gives when no queue could ever take it."""

from __future__ import annotations

from collections.abc import Sequence

from gridrun.allocating import AllocQueue, QueueState
from gridrun.dispatching import Candidate
from gridrun.resources import labels_match


def why_not(queue: AllocQueue, candidate: Candidate) -> str | None:
    """Why a worker of this queue could never take the task, or None if one could."""
    config = queue.config
    if candidate.worker is not None:
        return "it is pinned to one worker"
    if not labels_match(candidate.labels, config.labels, candidate.selector):
        wanted = [f"{k}={v}" for k, v in candidate.labels.items()]
        wanted += [str(t) for t in candidate.selector]
        return f"its workers do not match {', '.join(wanted)}"
    if candidate.resources and config.resources:
        gap = candidate.resources.shortfall(config.resources)
        if gap is not None:
            return f"its workers lack {gap}"
    left = config.worker_time_s
    if candidate.timeout_s is None:
        return (
            f"it has no timeout, and the queue's workers leave within {left:g}s of starting"
            " (give it --timeout)"
        )
    if candidate.timeout_s > left:
        return (
            f"its timeout ({candidate.timeout_s:g}s) is beyond the {left:g}s its workers have"
            f" (--time-limit {config.time_limit_s:g}s less a margin to leave)"
        )
    return None


def first_taker(queues: Sequence[AllocQueue], candidate: Candidate) -> AllocQueue | None:
    """The active queue whose workers could take the task, the plainest first (the fewest
    labels: a task that asks for no GPU does not bring up a GPU node while a plain queue
    could take it), then by name."""
    takers = [q for q in queues if q.state is QueueState.ACTIVE and why_not(q, candidate) is None]
    return min(takers, key=lambda q: (len(q.config.labels), q.name), default=None)


class QueueBook:
    """The allocation queues as the allocator last read them (on every master)."""

    def __init__(self) -> None:
        self.queues: list[AllocQueue] = []

    def set(self, queues: Sequence[AllocQueue]) -> None:
        self.queues = sorted(queues, key=lambda q: q.name)

    def why_none(self, candidate: Candidate) -> str | None:
        """Why no allocation queue could bring up a worker for the task (None: one could,
        or there are none)."""
        if not self.queues:
            return None
        reasons = []
        for queue in self.queues:
            why = why_not(queue, candidate)
            if why is None:
                return None
            reasons.append(f"{queue.name}: {why}")
        shown = "; ".join(reasons[:3]) + (
            f"; and {len(reasons) - 3} more" if len(reasons) > 3 else ""
        )
        return f"no allocation queue could take it ({shown})"

    def bringing(self, candidate: Candidate) -> str | None:
        """The active queue that would bring up a worker for the task, if one would."""
        queue = first_taker(self.queues, candidate)
        return None if queue is None else queue.name
