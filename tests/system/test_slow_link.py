"""A slow, lossy link between the master and its workers.

This machine's kernel has no sch_netem (`tc qdisc ... netem` answers "Specified qdisc kind is
unknown"), so the link is emulated in user space by a TCP relay: every chunk is held 100 ms, and
5% of chunks are held 200-400 ms more — what TCP makes of packet loss (a retransmission), with
order kept. 200 tasks must all complete, none run twice.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(240)]

DELAY_S = 0.1
LOSS = 0.05


class SlowLink:
    """127.0.0.1:port -> target, through a delay line per direction (in its own thread)."""

    def __init__(self, target_port: int, seed: int = 42) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.rng = random.Random(seed)
        self.delayed = 0
        self.chunks = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowLink:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        async with server:
            await self._stop.wait()
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                due, data = await line.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    dst.close()
                    return
                dst.write(data)
                await dst.drain()

        sender = asyncio.create_task(deliver())
        last_due = 0.0
        try:
            while True:
                data = await src.read(65536)
                self.chunks += 1
                extra = 0.0
                if self.rng.random() < LOSS:
                    extra = self.rng.uniform(0.2, 0.4)
                    self.delayed += 1
                last_due = max(last_due, loop.time() + DELAY_S + extra)
                line.put_nowait((last_due, data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()


@pytest.fixture
def slow_link(system_grid: SystemGrid) -> Iterator[SlowLink]:
    with SlowLink(system_grid.grpc_port) as link:
        yield link


def test_200_tasks_over_a_slow_lossy_link_all_complete_once(
    system_grid: SystemGrid, slow_link: SlowLink, tmp_path: Path
) -> None:
    system_grid.start_master()
    via = f"127.0.0.1:{slow_link.port}"
    system_grid.start_worker("w1", slots=4, master=via)
    system_grid.start_worker("w2", slots=4, master=via)
    ids_file = tmp_path / "ids"
    body = {"tasks": [{"cmd": f'echo "$GRIDRUN_TASK_ID" >> {ids_file}', "shell": True}] * 200}
    tasks = httpx.post(f"{system_grid.url}/v1/tasks", json=body, timeout=60).json()["tasks"]
    finals = [system_grid.task(t["id"], wait=60) for t in tasks]
    assert Counter(t["state"] for t in finals) == {"succeeded": 200}
    assert Counter(ids_file.read_text().split()) == Counter(t["id"] for t in tasks)
    assert slow_link.delayed > 0  # the link really did misbehave
