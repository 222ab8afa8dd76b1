"""Who is waiting on a task here: long-polls (`GET /v1/tasks/{id}?wait=`) that want its end, and
followers (`logs -f`, the dashboard) that want every change. The service says when a task
changed or ended; nothing here reads the store itself."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from gridrun.model import Task


class Watchers:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}  # task id -> long-polls
        self._followers: dict[str, set[asyncio.Event]] = {}  # task id -> followers

    async def wait(
        self, task_id: str, timeout_s: float, read: Callable[[], Awaitable[Task]]
    ) -> Task:
        """The task (as `read` returns it) once it is terminal, or as it is after `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        waiters = self._waiters.setdefault(task_id, set())
        try:
            while True:
                future: asyncio.Future[None] = loop.create_future()
                waiters.add(future)  # before reading: a change after the read wakes us
                task = await read()
                remaining = deadline - loop.time()
                if task.terminal or remaining <= 0:
                    return task
                try:
                    async with asyncio.timeout(remaining):
                        await future  # set when it ends here, or another master says it changed
                except TimeoutError:
                    pass
                finally:
                    waiters.discard(future)
        finally:
            if not waiters:
                self._waiters.pop(task_id, None)

    @contextmanager
    def watch(self, task_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the task changes (state, output) while the block runs; the
        follower clears it, reads the store, and waits again."""
        event = asyncio.Event()
        followers = self._followers.setdefault(task_id, set())
        followers.add(event)
        try:
            yield event
        finally:
            followers.discard(event)
            if not followers:
                self._followers.pop(task_id, None)

    def touched(self, task_id: str) -> None:
        """It changed: its followers read it again."""
        for event in self._followers.get(task_id, ()):
            event.set()

    def ended(self, task_id: str) -> None:
        """It may have ended: its long-polls read it again."""
        for future in self._waiters.get(task_id, ()):
            if not future.done():
                future.set_result(None)

    def changed(self, task_id: str) -> None:
        self.touched(task_id)
        self.ended(task_id)

    def watched(self) -> list[str]:
        """Every task someone here waits on or follows."""
        return list(self._followers) + list(self._waiters)
