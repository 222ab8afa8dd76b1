"""How far the master trusts its workers: the identity a worker id is bound to, and the
deadlines a worker must meet on the master's own clock, with the quarantine of one that keeps
missing them. A broken or hostile worker holding only the join token can neither take another
worker's place nor hold the queue in `assigned` forever.

Quarantine is this master's (in memory): a worker that reconnects to it stays quarantined; a
restart, or another master, starts it afresh. It follows the credential, not only the id: a
worker that joins with the join token of a quarantined one, from the same host, is
quarantined too (a rogue that comes back under a new id gets no work either), and the ids a
join token may mint are bounded (`max_workers_per_token`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

from gridrun.clock import Clock
from gridrun.master.core.config import ServiceConfig
from gridrun.master.core.sessions import CancelCmd, Sessions, WorkerSession
from gridrun.master.core.signals import Signals
from gridrun.model import AttemptRef, Outcome, Report
from gridrun.store import Store

log = logging.getLogger("gridrun.master")


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Trust:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: ServiceConfig,
        sessions: Sessions,
        signals: Signals,
    ) -> None:
        self.store, self.clock, self.config = store, clock, config
        self.sessions, self.signals = sessions, signals
        self._missed: dict[str, int] = {}  # worker id -> deadlines missed
        self._quarantine: dict[str, tuple[float, str]] = {}  # worker id -> (until, why)
        # (credential, host) -> (since, until, why): where quarantined workers joined from
        self._sources: dict[tuple[str, str], tuple[float, float, str]] = {}

    def overdue(self, session: WorkerSession, now: float) -> list[tuple[AttemptRef, str]]:
        """The attempts `session` holds past a deadline: not started within start_deadline_s
        of being sent, or not ended within that plus their timeout, the kill grace and a
        liveness timeout (the worker kills a timed-out task itself; this catches one that
        does not)."""
        late = []
        config = self.config
        # Unstarted attempts beyond the slots its started ones leave are held (prefetch): they
        # wait for a slot, and their deadline counts from when one last freed.
        unstarted = sorted((t, r) for r, t in session.sent_at.items() if r not in session.started)
        expected = max(session.slots - (len(session.sent_at) - len(unstarted)), 0)
        for sent, ref in unstarted[:expected]:
            since = max(sent, session.freed_at) if session.prefetch else sent
            if now - since > config.start_deadline_s:
                late.append((ref, f"not started within {config.start_deadline_s:g}s"))
        for ref, sent in session.sent_at.items():
            waited = now - sent
            if ref not in session.started:
                continue
            spec = session.inflight.get(ref)
            if spec is None or spec.timeout_s is None:
                continue
            allowed = (
                config.start_deadline_s + spec.timeout_s + config.kill_grace_s + session.timeout_s
            )
            if waited > allowed:
                late.append((ref, f"not ended within its timeout ({spec.timeout_s:g}s)"))
        return late

    async def missed_deadline(self, session: WorkerSession, ref: AttemptRef, why: str) -> None:
        """The worker loses the attempt (lost, or retried as its policy says), is told to stop
        it, and after quarantine_after misses gets no new work for quarantine_s."""
        session.release(ref)
        reason = f"worker {session.worker_id} missed a deadline: {why}"
        session.send(CancelCmd(ref, reason))
        result = await self.store.attempts.record_finish(
            ref, session.worker_id, Report(Outcome.LOST, error=reason), self.clock.now_ms()
        )
        if result.applied and result.task is not None:
            log.warning("task %s attempt %d lost: %s", ref.task_id, ref.attempt, reason)
            self.signals.settled([result.task])
        self.signals.wake()
        missed = self._missed[session.worker_id] = self._missed.get(session.worker_id, 0) + 1
        if missed >= self.config.quarantine_after and session.quarantined is None:
            why_q = f"missed {missed} deadlines (last: {why})"
            now = self.clock.monotonic()
            until = now + self.config.quarantine_s
            self._quarantine[session.worker_id] = (until, why_q)
            self._sources[session.credential, session.host] = (now, until, why_q)
            session.quarantined = why_q
            log.warning(
                "worker %s quarantined for %gs: %s",
                session.worker_id,
                self.config.quarantine_s,
                why_q,
            )

    def reason_for(self, worker_id: str) -> str | None:
        """Why the worker with this id gets no new work (None: it does, or it is away)."""
        session = self.sessions.get(worker_id)
        if session is not None and not session.closed:
            return self.quarantine_reason(session)
        held = self._quarantine.get(worker_id)
        return held[1] if held is not None and self.clock.monotonic() < held[0] else None

    def quarantine_reason(self, session: WorkerSession) -> str | None:
        """Why a worker gets no new work now (None: it does): its id is quarantined, or it
        joined with the credential of a quarantined worker from the same host."""
        now = self.clock.monotonic()
        source = (session.credential, session.host)
        held = self._sources.get(source)
        if held is not None and now >= held[1]:
            del self._sources[source]
            held = None
        worker_id = session.worker_id
        mine = self._quarantine.get(worker_id)
        if mine is not None and now >= mine[0]:
            del self._quarantine[worker_id]
            self._missed.pop(worker_id, None)
            mine = None
        why = mine[1] if mine is not None else None
        if why is None and held is not None and session.joined_at >= held[0]:
            # joined since: as a quarantined worker would come back, under a new id (those
            # of the same credential and host already connected keep their work)
            why = f"it joined with the credential and host of a quarantined worker ({held[2]})"
        if why is None and session.quarantined is not None:
            session.quarantined = None  # lifted: it may take work again
            self.signals.wake()
        return why

    def _too_many(self, credential: str) -> str:
        most = self.config.max_workers_per_token
        return (
            f"the join token {credential or '(none)'} has {most:,} worker ids bound already"
            " (master --max-workers-per-token); an id that never ran anything is forgotten"
            " once offline for --forget-unused-workers"
        )

    async def bind_identity(
        self, worker_id: str, presented: str, *, binds: bool, credential: str = ""
    ) -> tuple[str | None, str]:
        """Tie a worker id to the process that first joined with it. Returns why a worker is
        refused (None if it is not) and, on its first join, the secret to hand it: a second
        process naming the same id, with the join token but without that secret, is refused,
        and the real worker keeps its tasks and results."""
        refusal = (
            f"worker id {worker_id!r} is bound to the worker that first joined with it (the"
            " secret in its data dir); give this worker its own --name or --data-dir"
        )
        now = self.clock.now_ms()
        most = self.config.max_workers_per_token
        if presented:
            wanted = _secret_hash(presented)
            stored = await self.store.workers.bind_worker(worker_id, wanted, now, credential, most)
            if stored is None:
                return self._too_many(credential), ""
            return (None, "") if hmac.compare_digest(stored, wanted) else (refusal, "")
        if not binds:  # an older worker keeps no secret: it may use only an unbound id
            return (refusal if await self.store.workers.worker_secret(worker_id) else None), ""
        issued = secrets.token_urlsafe(32)
        stored = await self.store.workers.bind_worker(
            worker_id, _secret_hash(issued), now, credential, most
        )
        if stored is None:
            return self._too_many(credential), ""
        if not hmac.compare_digest(stored, _secret_hash(issued)):
            return refusal, ""
        log.info("worker %s joined for the first time: its id is bound to it", worker_id)
        return None, issued
