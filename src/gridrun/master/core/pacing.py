"""How often each worker beats and how long its lease runs: a large fleet beats less often (as
Nomad paces its clients), so the master's heartbeat load stays bounded however many join."""

from __future__ import annotations

import dataclasses

from gridrun.clock import Clock
from gridrun.master.core.config import ServiceConfig
from gridrun.master.core.sessions import Sessions, WelcomeCmd, WorkerSession
from gridrun.model import WorkerInfo


class Pacing:
    def __init__(self, config: ServiceConfig, clock: Clock, sessions: Sessions) -> None:
        self.config = config
        self.clock = clock
        self.sessions = sessions

    def pace(self, fleet: int) -> tuple[float, float]:
        """(heartbeat interval, liveness timeout) for a worker joining a fleet of this size."""
        config = self.config
        interval = max(config.heartbeat_interval_s, fleet / config.max_heartbeats_per_s)
        return interval, config.liveness_timeout_s * interval / config.heartbeat_interval_s

    def repace(self) -> None:
        """The fleet grew: ask workers that beat faster than its pace now to slow down (never
        to speed up: while a worker is connected its timeout only grows)."""
        live = [s for s in self.sessions if not s.closed and not s.legacy]
        interval, timeout = self.pace(len(live))
        for session in live:
            if session.heartbeat_s < interval * 0.8:
                session.heartbeat_s, session.timeout_s = interval, timeout
                session.send(WelcomeCmd(session.worker_id, interval, self.config.output_cap))

    def lease_until(self, from_ms: int, session: WorkerSession) -> int:
        """The end of the lease to write for this worker, from `from_ms`; remembered on the
        session so that liveness renews it only once half a heartbeat of it is spent."""
        session.lease_until = from_ms + round(session.timeout_s * 1000)
        return session.lease_until

    def epoch_ms(self, monotonic: float) -> int:
        """A time of the monotonic clock (a session's last word) as epoch milliseconds."""
        return self.clock.now_ms() - round((self.clock.monotonic() - monotonic) * 1000)

    def as_seen(self, workers: list[WorkerInfo]) -> list[WorkerInfo]:
        """Workers as stored, with live last-seen times for the ones connected here; one whose
        lease ran out is offline, whatever its row says (its master may have died)."""
        now_ms, now = self.clock.now_ms(), self.clock.monotonic()
        seen = list(workers)
        for i, worker in enumerate(seen):
            session = self.sessions.get(worker.id)
            if session is not None and not session.closed:
                at = now_ms - round((now - session.last_seen) * 1000)
                seen[i] = dataclasses.replace(worker, last_seen=at)
            elif worker.state_at(now_ms) is not worker.state:
                seen[i] = dataclasses.replace(worker, state=worker.state_at(now_ms))
        return seen
