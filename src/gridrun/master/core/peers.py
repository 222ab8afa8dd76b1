"""Other masters on the same database: their notices, acted on by this one (and the few of our
own that tell of changes a step made besides the one it was asked for).

A task submitted to master A must start on a worker connected to master B, a cancel sent to A
must stop the process on B's worker, and a client waiting on A must learn that B's worker
finished. The store carries `Notice`s between masters (PostgreSQL LISTEN/NOTIFY); this module
turns them into this master's local wake-ups (`Signals`) and use cases. Notices only wake: the
database stays the truth, so a lost notice delays, never corrupts (and a periodic dispatch pass
covers it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from gridrun.master.core.service import Service
from gridrun.master.core.sessions import Sessions
from gridrun.master.core.signals import Signals
from gridrun.store import Notice, NoticeKind, Store

log = logging.getLogger("gridrun.master")

# Wake-ups acted on even when they are this master's own: a step can change tasks besides the
# one it was asked about (tasks waiting for it are released or skipped), and the store says so
# only by notices.
OWN_TOO = frozenset({NoticeKind.QUEUED, NoticeKind.TASK, NoticeKind.RESYNC})


class Peers:
    def __init__(
        self, store: Store, sessions: Sessions, signals: Signals, service: Service
    ) -> None:
        self.store, self.sessions, self.signals = store, sessions, signals
        self.service = service  # (cancel and drain are use cases: a peer asks, as a client would)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.store.listen(self.heard)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def heard(self, notice: Notice) -> None:
        service = self.service
        if notice.origin == self.store.origin and notice.kind not in OWN_TOO:
            return  # our own, already acted on
        if notice.kind is NoticeKind.QUEUED:
            self.signals.wake()
        elif notice.kind is NoticeKind.TASK:
            self.signals.changed(notice.subject)
        elif notice.kind is NoticeKind.CANCEL:
            self._spawn(service.cancel_here(notice.subject), f"cancel {notice.subject}")
        elif notice.kind is NoticeKind.DRAIN:
            session = self.sessions.get(notice.subject)
            if session is not None and not session.closed:
                self._spawn(service.drain(notice.subject), f"drain {notice.subject}")
        elif notice.kind is NoticeKind.RESYNC:
            self.signals.resync()
        else:
            log.warning("ignoring an unknown notice from master %s: %s", notice.origin, notice)

    def _spawn(self, work: Coroutine[Any, Any, Any], what: str) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("could not %s as another master asked", what)

        task = asyncio.create_task(run(), name=f"peer {what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
