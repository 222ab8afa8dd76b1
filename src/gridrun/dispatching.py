"""The queue as dispatch sees it, the vocabulary placement (gridrun.master.core.scheduler and
fairness, pure) and the store's claims share: a queued task as a `Candidate`, its `Lane`,
what runs (`Active`), the `Quota`s, and a plan's `Placed` pairs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gridrun.model import ANONYMOUS, DEFAULT_QUEUE, Concurrency, Placement
from gridrun.resources import NO_RESOURCES, Resources, Term


@dataclass(frozen=True, slots=True)
class Candidate:
    """A queued task as the scheduler needs to see it."""

    task_id: str
    priority: int
    seq: int
    labels: Mapping[str, str]  # required, with these values
    legacy_ok: bool
    selector: tuple[Term, ...] = ()  # terms beyond `labels`
    resources: Resources = NO_RESOURCES
    unschedulable: str | None = None  # as last recorded
    worker: str | None = None  # pinned to this worker (a broadcast job's task)
    task_class: str | None = None
    placement: Placement = Placement.SPREAD
    concurrency: Concurrency | None = None
    owner: str = ANONYMOUS
    queue: str = DEFAULT_QUEUE
    stdin: bool = False  # it has a stdin: only a worker that feeds it may take it
    script: bool = False  # it ships a script: only a worker that runs one may take it
    files: bool = False  # inputs or collected files: only a worker that handles them may
    # its timeout (None: none, or queued by a master older than the field): a worker that
    # leaves at a time limit takes it only if it ends before then
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class Lane:
    """The queued tasks of one owner, in one queue, of one shape (what placement reads of a
    task: labels, selector, resources, class, pinned worker, concurrency key, timeout): its key (the
    stored `lane`), and a probe candidate (its owner, queue and shape) to test it against
    the free slots, the quotas and the concurrency limits without reading a row."""

    key: str
    probe: Candidate


@dataclass(frozen=True, slots=True)
class Active:
    """What runs (assigned or running) across the grid, as quotas and concurrency limits
    count it."""

    by_owner: Mapping[str, int]
    by_queue: Mapping[str, int]
    by_key: Mapping[str, int]  # by Concurrency.counted
    # the limit of each key among the tasks looked at (Concurrency.counted -> its limit as
    # declared now; a task's own copy may be older)
    key_limits: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Quota:
    """Limits for one owner or one queue (None: no limit)."""

    scope: str  # "owner" or "queue"
    name: str
    max_queued: int | None = None
    max_running: int | None = None


Planner = Callable[[dict[str, list[Candidate]], Active, Sequence[Quota]], "Placed"]


Placed = list[tuple[Candidate, str]]  # (candidate, worker_id) pairs
