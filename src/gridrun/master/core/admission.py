"""Whether new tasks fit: the most the grid, an owner (quota) or a queue may hold queued. Asked
by every path that makes tasks: a client's submission (answered 429 when they do not fit) and a
schedule's slots (skipped, and counted, when they do not)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from gridrun.errors import TooManyQueued
from gridrun.model import TaskSpec, TaskState
from gridrun.store import Store


class Admission:
    def __init__(self, store: Store, max_queued: int) -> None:
        self.store = store
        self.max_queued = max_queued

    async def check(self, specs: Sequence[TaskSpec]) -> None:
        """Refuse (429) a batch that would take the grid, an owner or a queue past what it
        may hold queued. A soft limit: batches submitted at the same moment may each pass."""
        for why in await self.room(specs):
            if why is not None:
                raise TooManyQueued(f"{why}: submit again once some have run")

    async def room(self, specs: Sequence[TaskSpec]) -> list[str | None]:
        """For each spec in turn, None if it fits in what the grid, its owner and its queue
        may hold queued (counting the specs before it), else why not."""
        counts = await self.store.tasks.count_by_state()
        queued = counts.get(TaskState.QUEUED, 0)
        limits = {
            (q.scope, q.name): q.max_queued
            for q in await self.store.dispatch.quotas()
            if q.max_queued is not None
        }
        if not limits and queued + len(specs) <= self.max_queued:
            return [None] * len(specs)  # (the common case: no look at each of 10,000 specs)
        held: dict[tuple[str, str], int] = {}  # as stored, when first needed
        adding: Counter[tuple[str, str]] = Counter()
        answers: list[str | None] = []
        for spec in specs:
            why = None
            if queued + 1 > self.max_queued:
                why = (
                    f"the grid holds {queued:,} queued tasks, its limit is"
                    f" {self.max_queued:,} (master --max-queued)"
                )
            scopes = [("owner", spec.owner), ("queue", spec.queue)]
            for scope in scopes:
                limit = limits.get(scope)
                if limit is None or why is not None:
                    continue
                if scope not in held:
                    held[scope] = await self.store.dispatch.queued_count(*scope, limit + 1)
                if held[scope] + adding[scope] + 1 > limit:
                    why = (
                        f"{scope[0]} {scope[1]} has {held[scope]:,} tasks queued; its quota is"
                        f" {limit:,} (gridrun quota show)"
                    )
            if why is None:
                queued += 1
                adding.update(scopes)
            answers.append(why)
        return answers
