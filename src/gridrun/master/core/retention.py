"""Keeping the database bounded: the background retention pass (ended tasks deleted after
--retain, --retain-failed, a queue's --retain-queue or a task's own retain_s; output kept
within --output-budget), deleting by hand (`gridrun gc`), and what the database holds."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence

from gridrun.clock import Clock
from gridrun.master.core.config import ServiceConfig
from gridrun.master.core.metrics import Metrics
from gridrun.model import TERMINAL, TaskState
from gridrun.store import Own, RetentionStore, Storage
from gridrun.store.file_store import FileStore
from gridrun.store.retention import GC_BATCH

log = logging.getLogger("gridrun.master")

FAILURES = frozenset({TaskState.FAILED, TaskState.TIMED_OUT, TaskState.LOST, TaskState.REJECTED})
BUDGET_S = 0.5  # a background pass deletes for at most this long, then yields
EVERY_S = 60.0  # how often the background pass runs (more often for a shorter retention)
STORAGE_EVERY_S = 30.0  # how stale the storage figures may be
DISK_WARN = 0.9


class Retention:
    def __init__(
        self, store: RetentionStore, clock: Clock, config: ServiceConfig, metrics: Metrics,
        files: FileStore | None = None,
    ) -> None:  # fmt: skip
        self.store, self.clock, self.config, self.metrics = store, clock, config, metrics
        self.files = files  # inputs no task uses any more go with each pass
        self.next_at = clock.monotonic()  # (clock seconds) the next background pass
        self._storage: tuple[float, Storage] | None = None  # (when, what) of the last look
        self._warned = ""  # the last storage warning logged (each is logged once)

    async def collect(
        self, older_than_s: float, states: Iterable[TaskState], dry_run: bool = False,
        budget_s: float | None = None, queues: tuple[bool, Sequence[str]] = (False, ()),
        own: Own = "ignore",
    ) -> int:  # fmt: skip
        """Delete ended tasks in these states that ended more than `older_than_s` ago, batch
        by batch (yielding to the event loop between them), for at most `budget_s`; return
        how many (with `dry_run`, how many would be)."""
        store = self.store
        before = self.clock.now_ms() - round(older_than_s * 1000)
        wanted = [s for s in states if s in TERMINAL]
        if dry_run:
            return await store.count_collectable(before, wanted, queues, own)
        deleted, began = 0, time.monotonic()
        while budget_s is None or time.monotonic() - began < budget_s:
            batch = await store.collect(before, wanted, queues=queues, own=own)
            deleted += batch
            if batch < GC_BATCH:
                break
            await asyncio.sleep(0)  # dispatch and reports go on between batches
        if deleted:
            await store.reclaim()
            self.metrics.collected.inc(deleted)
        return deleted

    async def tick(self) -> None:
        """The liveness loop's turn: log a nearly full disk (once), and run the background
        pass when it is due (at once again if its time budget cut it short)."""
        for warning in self.warnings():
            if warning != self._warned:
                log.warning("%s", warning)
            self._warned = warning
        clock = self.clock
        if clock.monotonic() < self.next_at:
            return
        deleted = await self.run()
        if deleted:
            log.info("retention deleted %d ended task(s)", deleted)
        config = self.config
        retains = [config.retain_s, config.retain_failed_s or config.retain_s]
        every = min(EVERY_S, min(retains + list(config.retain_queues.values())) / 4)
        self.next_at = clock.monotonic() + (0 if deleted >= GC_BATCH else every)

    def seconds_to_next(self) -> float:
        return max(0.0, self.next_at - self.clock.monotonic())

    async def run(self) -> int:
        """The background pass: what --retain, --retain-failed, --retain-queue and each
        task's own retain_s say may go; then the output budget."""
        config, budget = self.config, BUDGET_S
        failed = config.retain_failed_s or config.retain_s
        kept_ok = [s for s in TERMINAL if s not in FAILURES]
        others = (False, sorted(config.retain_queues))  # queues with a retention of their own
        mine: Own = "exclude"  # (a task's own retention, if it has one, wins: last pass)
        deleted = await self.collect(config.retain_s, kept_ok, False, budget, others, mine)
        deleted += await self.collect(failed, FAILURES, False, budget, others, mine)
        for queue, retain in sorted(config.retain_queues.items()):
            deleted += await self.collect(retain, TERMINAL, False, budget, (True, [queue]), mine)
        deleted += await self.collect(0, TERMINAL, budget_s=budget, own="only")
        await self.keep_output_budget()
        if self.files is not None:
            await self.files.unused_inputs(self.clock.now_ms())
        return deleted

    async def keep_output_budget(self) -> int:
        """Drop the output of the oldest ended tasks until what is kept fits --output-budget;
        the bytes freed."""
        budget, store = self.config.output_budget, self.store
        if budget is None:
            return 0
        kept, freed, began = await store.output_kept(), 0, time.monotonic()
        while kept > budget and time.monotonic() - began < BUDGET_S:
            batch = await store.expire_output(kept - budget)
            if not batch:
                break  # what is left belongs to tasks that have not ended
            kept, freed = kept - batch, freed + batch
            await asyncio.sleep(0)
        if freed:
            log.info("output budget: dropped %d bytes of the oldest ended tasks' output", freed)
            self.metrics.output_expired.inc(freed)
        return freed

    async def storage(self) -> Storage:
        """What the database holds and takes, at most STORAGE_EVERY_S old (it reads every
        output row, so it is looked at when asked: /metrics, /v1/storage)."""
        now = time.monotonic()
        if self._storage is None or now - self._storage[0] > STORAGE_EVERY_S:
            self._storage = (now, await self.store.storage())
        return self._storage[1]

    def warnings(self) -> list[str]:
        """What /healthz warns of, and `tick` logs: a disk nearly full."""
        used = self.store.disk_used()
        if used is not None and used > DISK_WARN:
            return [f"the disk holding the database is {used:.0%} full"]
        return []
