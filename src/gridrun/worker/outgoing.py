"""What a worker has to say to its master, in order, written as it accumulates.

Each write takes everything queued since the last one: one WorkerBatch when the master takes
batches (its Welcome says so), else one message after another. So at light load a message goes
out at once, and under load many reports share one message (and, on the master, one
transaction). A message may carry an action to run once it is written: the spawn of the
attempt whose Started it is (see Agent: a worker never spawns before it said so).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from gridrun import transport
from gridrun._proto import worker_pb2 as pb

Then = Callable[[], None]


class Outgoing:
    def __init__(self, batches: bool) -> None:
        self.batches = batches
        self._items: list[tuple[pb.WorkerMessage, Then | None]] = []
        self._ready = asyncio.Event()

    def put(self, message: pb.WorkerMessage, then: Then | None = None) -> None:
        self._items.append((message, then))
        self._ready.set()

    def qsize(self) -> int:
        return len(self._items)

    async def write_to(self, call: grpc.aio.StreamStreamCall[pb.WorkerMessage, object]) -> None:
        """Write what is queued, as it is queued, for as long as the stream lasts; run each
        message's action once it is written."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            items, self._items = self._items, []
            for chunk in transport.batched(items, lambda item: item[0].ByteSize()):
                if len(chunk) == 1 or not self.batches:
                    for message, _ in chunk:
                        await call.write(message)
                else:
                    batch = pb.WorkerBatch(messages=[m for m, _ in chunk])
                    await call.write(pb.WorkerMessage(batch=batch))
                for _, then in chunk:
                    if then is not None:
                        then()
