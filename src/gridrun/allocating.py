"""Allocation queues, the vocabulary the master's allocator, its backends and the store share:
a queue (`AllocQueue`: where workers come from, what they are like, its caps) and each of its
allocations (`Allocation`: one job of the cluster's scheduler that runs one or more
`gridrun worker`s), with their states. Pure values; the decisions are the allocator's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from gridrun.resources import NO_RESOURCES, Resources

BACKENDS = ("slurm", "command")
MAX_FAILURES = 3  # in a row: the queue is paused with the last reason
WORKER_PREFIX = "alloc-"  # an allocation's workers are named alloc-<allocation id>-<n>


class QueueState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"  # by a user, or after MAX_FAILURES failures in a row (its reason says)


class AllocState(StrEnum):
    QUEUED = "queued"  # submitted: waiting in the cluster's queue
    RUNNING = "running"  # the cluster runs it: its workers connect (or have)
    ENDED = "ended"  # it ended by itself (its workers left: idle, or their time was up)
    FAILED = "failed"  # refused, failed, or its workers never connected
    CANCELLED = "cancelled"  # we cancelled it (not needed any more, or its queue removed)

    @property
    def active(self) -> bool:
        return self in (AllocState.QUEUED, AllocState.RUNNING)


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """What a queue's workers are and how they are asked for; kept as given."""

    backend: str = "slurm"
    time_limit_s: float = 3600.0  # each allocation's walltime
    backlog: int = 1  # at most this many allocations waiting in the cluster's queue at once
    max_workers: int | None = None  # at most this many workers (running and coming)
    workers_per_alloc: int = 1
    idle_timeout_s: float = 300.0  # a worker leaves after this long with nothing to run
    slots: int | None = None  # each worker's slots (None: the node's CPUs, counted as 1 here)
    labels: Mapping[str, str] = field(default_factory=dict)  # each worker's labels
    resources: Resources = NO_RESOURCES  # what each worker offers, where said
    worker_args: tuple[str, ...] = ()  # more arguments for `gridrun worker`
    worker_command: tuple[str, ...] = ()  # () the master's own executable's `gridrun worker`
    master: str = ""  # the address the workers dial ("" the master's own gRPC address)
    args: tuple[str, ...] = ()  # raw arguments of the backend (sbatch's, or the start command)
    stop: tuple[str, ...] = ()  # the command backend's stop command (the id appended)

    @property
    def worker_time_s(self) -> float:
        """The --time-limit its workers get: the walltime less a margin to finish and leave
        (a tenth, between 10 s and 5 min, never below half of it)."""
        margin = min(max(self.time_limit_s / 10, 10.0), 300.0, self.time_limit_s / 2)
        return self.time_limit_s - margin

    @property
    def slots_each(self) -> int:
        return self.slots or 1


@dataclass(frozen=True, slots=True)
class AllocQueue:
    name: str
    config: QueueConfig
    state: QueueState = QueueState.ACTIVE
    reason: str | None = None  # why paused; or the last failure while active
    failures: int = 0  # in a row, since the last allocation whose workers connected
    created_at: int = 0  # ms
    next_at: int = 0  # ms: no submission before (a failure's backoff)


@dataclass(frozen=True, slots=True)
class Allocation:
    id: str
    queue: str
    state: AllocState
    workers: int  # how many workers it runs
    created_at: int  # ms
    backend_id: str = ""  # the cluster's id for it (Slurm's job id)
    token_hash: str = ""  # the digest of its join credential (valid while active)
    started_at: int | None = None  # ms: when the cluster started it
    connected_at: int | None = None  # ms: when its first worker joined
    ended_at: int | None = None
    error: str | None = None  # what went wrong, or how it ended

    def worker_name(self, n: int) -> str:
        return f"{WORKER_PREFIX}{self.id}-{n}"


def allocation_of(worker_id: str) -> str | None:
    """The allocation a worker's id names (alloc-<id>-<n>), or None."""
    if not worker_id.startswith(WORKER_PREFIX):
        return None
    rest = worker_id[len(WORKER_PREFIX) :]
    alloc_id, _, n = rest.rpartition("-")
    return alloc_id if alloc_id and n.isdigit() else None
