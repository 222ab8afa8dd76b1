"""The master's core, made and wired in one place: each part is handed exactly what it uses
(the store, the clock, its settings, the `Signals` the parts share), none holds a pointer to
another's owner. The edges are given the parts they call: the HTTP edge `Service` (and
`Schedules`, `Retention`, `Trust`'s quarantine for what it shows), the gRPC edge
`WorkerStreams` and `Trust`."""

from __future__ import annotations

from dataclasses import dataclass

from gridrun.clock import Clock
from gridrun.master.core.access import Grants
from gridrun.master.core.admission import Admission
from gridrun.master.core.alloc_fit import QueueBook
from gridrun.master.core.allocator import Allocator
from gridrun.master.core.config import ServiceConfig
from gridrun.master.core.dispatcher import Dispatcher
from gridrun.master.core.files import Files
from gridrun.master.core.jobs import Jobs
from gridrun.master.core.liveness import Liveness
from gridrun.master.core.metrics import Metrics
from gridrun.master.core.pacing import Pacing
from gridrun.master.core.peers import Peers
from gridrun.master.core.retention import Retention
from gridrun.master.core.schedules import Schedules
from gridrun.master.core.sealing import Sealer
from gridrun.master.core.service import Service
from gridrun.master.core.sessions import Sessions
from gridrun.master.core.signals import Signals
from gridrun.master.core.trust import Trust
from gridrun.master.core.worker_streams import WorkerStreams
from gridrun.store import Store


@dataclass(frozen=True, slots=True)
class Core:
    store: Store
    clock: Clock
    config: ServiceConfig
    sessions: Sessions
    metrics: Metrics
    signals: Signals
    pacing: Pacing
    admission: Admission
    trust: Trust
    dispatcher: Dispatcher
    streams: WorkerStreams
    retention: Retention
    service: Service
    jobs: Jobs
    schedules: Schedules
    liveness: Liveness
    peers: Peers
    allocator: Allocator
    files: Files


def wire(
    store: Store,
    clock: Clock,
    config: ServiceConfig,
    sessions: Sessions | None = None,
    metrics: Metrics | None = None,
    sealer: Sealer | None = None,
    grants: Grants | None = None,
) -> Core:
    sessions = sessions if sessions is not None else Sessions()
    metrics = metrics or Metrics(config.history_step_s)
    sealer = sealer or Sealer.ephemeral()
    signals = Signals(clock, metrics)
    pacing = Pacing(config, clock, sessions)
    admission = Admission(store, config.max_queued)
    trust = Trust(store, clock, config, sessions, signals)
    dispatcher = Dispatcher(store, clock, config, sessions, signals, sealer)
    streams = WorkerStreams(store, clock, config, sessions, pacing, trust, signals)
    retention = Retention(store.retention, clock, config, metrics, store.files)
    files = Files(store, clock, config, sealer)
    service = Service(store, clock, sessions, signals, pacing, admission, streams, sealer, files)
    jobs = Jobs(store, clock, sessions, signals, admission, service)
    schedules = Schedules(store.schedules, clock, admission, signals)
    book = QueueBook()
    liveness = Liveness(
        store, clock, config, sessions, signals, pacing, trust, streams, retention, schedules,
        book,
    )  # fmt: skip
    peers = Peers(store, sessions, signals, service)
    allocator = Allocator(store, clock, config, metrics, book, grants or Grants())
    return Core(
        store, clock, config, sessions, metrics, signals, pacing, admission, trust,
        dispatcher, streams, retention, service, jobs, schedules, liveness, peers, allocator,
        files,
    )  # fmt: skip
