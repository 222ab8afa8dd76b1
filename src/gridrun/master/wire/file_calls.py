"""The gRPC edge for a task's files: `Fetch` (an input's bytes, to the worker that holds the
attempt) and `Collect` (one collected file, from it), protobuf <-> gridrun.master.core.files.
Each call shows its attempt's files ticket (and, where joining takes one, the join
credential); the bytes never travel on the worker's own stream."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from gridrun import transport
from gridrun._proto import worker_pb2 as pb
from gridrun.errors import BadRequest, GridrunError, InsufficientStorage, Unauthorized
from gridrun.master.core.access import Access
from gridrun.master.core.files import Files
from gridrun.model import AttemptRef

log = logging.getLogger("gridrun.master.rpc")

FETCH_PIECE = 256 * 1024  # bytes per FileChunk message (a stored chunk is sent in pieces)

Context = grpc.aio.ServicerContext[Any, Any]


def _ref(ref: pb.AttemptRef) -> AttemptRef:
    return AttemptRef(ref.task_id, ref.attempt)


class FileCalls:
    def __init__(self, files: Files, access: Access) -> None:
        self._files, self._access = files, access

    async def _admit(self, context: Context) -> None:
        refusal = self._access.join_refusal(context.invocation_metadata() or (), context.peer())
        if refusal is not None:
            await transport.abort(context, Unauthorized(refusal))

    async def fetch(
        self, request: pb.FetchRequest, context: Context
    ) -> AsyncIterator[pb.FileChunk]:
        await self._admit(context)
        try:
            pieces = await self._files.fetch(
                request.ticket, _ref(request.ref), request.digest, request.offset
            )
            async for data in pieces:
                for at in range(0, len(data), FETCH_PIECE):
                    yield pb.FileChunk(data=data[at : at + FETCH_PIECE])
        except GridrunError as exc:
            log.warning("refused a Fetch of task %s: %s", request.ref.task_id, exc.message)
            await transport.abort(context, exc)

    async def collect(
        self, requests: AsyncIterator[pb.CollectMessage], context: Context
    ) -> pb.CollectReply:
        await self._admit(context)
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("msg") != "head":
            await transport.abort(context, BadRequest("a Collect call begins with its head"))
        head = first.head
        ref = _ref(head.ref)
        ended: list[str] = []

        async def data() -> AsyncIterator[bytes]:
            async for msg in requests:
                kind = msg.WhichOneof("msg")
                if kind == "data":
                    yield msg.data
                elif kind == "end":
                    ended.append(msg.end.digest)
                    return
                else:
                    raise BadRequest("a Collect call has one head")
            raise BadRequest("the file's upload ended before its end")  # (left incomplete)

        try:
            if head.dropped:
                await self._files.dropped(head.ticket, ref, head.path, head.size, head.reason)
                return pb.CollectReply(stored_bytes=0)
            size, _ = await self._files.receive(
                head.ticket, ref, head.path, head.size, head.mode, data(),
                lambda: ended[0] if ended else "",
            )  # fmt: skip
        except InsufficientStorage as exc:
            # not UNAVAILABLE, which the worker waits out sending the file again and again
            # (its task unreported meanwhile): the file is dropped, saying so, and the task
            # ends with its true state
            log.warning("could not keep a file of task %s: %s", ref.task_id, exc.message)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message)
        except GridrunError as exc:
            log.warning("refused a file of task %s: %s", ref.task_id, exc.message)
            await transport.abort(context, exc)
        return pb.CollectReply(stored_bytes=size)
