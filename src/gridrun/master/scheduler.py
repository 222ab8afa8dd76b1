"""Placement policy: which worker gets which queued task. Pure functions over data.

Candidates arrive in queue order (priority, then FIFO). Each goes to an eligible worker — labels
match, a slot free — and among those to the least loaded. Legacy (article) workers report nothing
back, so they are used only for tasks they can represent and only when no gridrun worker can take
the task now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gridrun.model import labels_match
from gridrun.store import Candidate


@dataclass(slots=True)
class Capacity:
    """A connected worker as placement sees it; `used` grows as tasks are placed."""

    worker_id: str
    labels: Mapping[str, str]
    slots: int
    used: int
    legacy: bool = False

    @property
    def free(self) -> int:
        return max(self.slots - self.used, 0)


def _load(worker: Capacity) -> tuple[int, float, int, str]:
    # legacy last; then the lowest fraction of slots in use; then the most free slots
    return (int(worker.legacy), worker.used / worker.slots, -worker.free, worker.worker_id)


def eligible(candidate: Candidate, worker: Capacity) -> bool:
    if worker.free <= 0:
        return False
    if worker.legacy and not candidate.legacy_ok:
        return False
    return labels_match(candidate.selector, worker.labels)


def place(
    candidates: Iterable[Candidate], workers: Iterable[Capacity]
) -> list[tuple[Candidate, str]]:
    """Return (candidate, worker_id) pairs; candidates that fit nowhere now are left out."""
    pool = [w for w in workers if w.slots > 0]
    placed: list[tuple[Candidate, str]] = []
    for candidate in candidates:
        if not any(w.free for w in pool):
            break
        options = [w for w in pool if eligible(candidate, w)]
        if not options:
            continue
        best = min(options, key=_load)
        best.used += 1
        placed.append((candidate, best.worker_id))
    return placed
