"""What the master's parts tell one another without knowing one another: a dispatch pass is
wanted, a task changed or ended (for long-polls, followers and metrics), the master is
stopping. Each part is handed this one object instead of a pointer to the whole master."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from gridrun.clock import Clock
from gridrun.master.core.metrics import Metrics
from gridrun.master.core.watchers import Watchers
from gridrun.model import Task


class Signals:
    def __init__(self, clock: Clock, metrics: Metrics, watchers: Watchers | None = None) -> None:
        self.clock = clock
        self.metrics = metrics
        self.watchers = watchers or Watchers()
        self.dispatch_wanted = asyncio.Event()  # the dispatch loop waits on it
        self.stopping = asyncio.Event()  # set when the master shuts down: followers end

    def wake(self) -> None:
        """Something may be placeable now (a task queued, a slot or a limit freed)."""
        self.dispatch_wanted.set()

    def touched(self, task_id: str) -> None:
        """The task changed here: its followers read it again."""
        self.watchers.touched(task_id)

    def changed(self, task_id: str) -> None:
        """The task changed where this master did not see it (another master, a reason
        recorded): followers and waiters here read it again."""
        self.watchers.changed(task_id)

    def settled(self, tasks: Iterable[Task]) -> None:
        """These tasks were moved on: followers read them again; those that ended wake their
        waiters and are counted."""
        for task in tasks:
            self.watchers.touched(task.id)
            if task.terminal:
                self.metrics.settled(task, self.clock.now_ms())
                self.watchers.ended(task.id)

    def resync(self) -> None:
        """Notices may have been missed (the store connection was lost): look at everything."""
        self.dispatch_wanted.set()
        for task_id in self.watchers.watched():
            self.watchers.changed(task_id)
