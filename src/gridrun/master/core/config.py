"""The master core's settings: what its parts are tuned by (heartbeats, deadlines, quarantine,
fair shares, queue limits, retention). Made once by the master process from its own settings;
each part is handed this object and reads only its own fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    heartbeat_interval_s: float = 2.0
    liveness_timeout_s: float = 10.0
    # A large fleet beats less often (as Nomad paces its clients): each worker is given an
    # interval that keeps the fleet under this many heartbeats a second, never shorter than
    # heartbeat_interval_s, and its liveness timeout grows in proportion.
    max_heartbeats_per_s: float = 100.0
    output_cap: int = 1024 * 1024
    kill_grace_s: float = 5.0
    # a distrusted worker: deadlines on the master's own clock, then no new work for a while
    start_deadline_s: float = 60.0  # from an Assign sent to its Started
    quarantine_after: int = 3  # deadlines missed before a worker is quarantined
    quarantine_s: float = 3600.0
    forget_workers_after_s: float = 7 * 24 * 3600.0  # offline this long: no longer listed
    forget_unused_workers_after_s: float = 600.0  # likewise, an id that never ran anything
    max_workers_per_token: int = 10_000  # worker ids one join token may have bound at once
    # a shared grid (see gridrun.master.core.fairness): owner -> weight (default 1), and the most
    # tasks the grid may hold queued (beyond it a submission is answered 429)
    shares: Mapping[str, float] = field(default_factory=dict)
    max_queued: int = 10_000_000
    # retention: ended tasks are deleted this long after they end (failures: retain_failed_s)
    retain_s: float = 14 * 86400.0
    retain_failed_s: float | None = None  # None: as retain_s
    # files that travel with tasks: a task's inputs, all together; a task's collected files
    # per attempt (beyond it, the rest are dropped, and said so)
    max_input: int = 64 << 20
    max_collect: int = 256 << 20
    output_budget: int | None = None  # bytes of output kept grid-wide; beyond, the oldest go
    retain_queues: Mapping[str, float] = field(default_factory=dict)  # queue -> its retention
    history_step_s: float = 5.0  # the dashboard's charts: one sample of the grid this often
    # allocation queues (gridrun.master.core.allocator): how often they are looked at; how
    # long a running allocation's workers have to join before it counts as failed; the gRPC
    # address its workers dial ("": the master's own, made by the master process); the
    # directory its backends keep files in
    alloc_interval_s: float = 5.0
    alloc_connect_timeout_s: float = 300.0
    advertise: str = ""
    alloc_dir: str = ""  # "": alloc/ in the master's data directory
    # the backends an admin may use: `command` runs commands on the master's own host, so it
    # is the operator's to allow (master --alloc-backend command), not a token's
    alloc_backends: list[str] = field(default_factory=lambda: ["slurm"])
