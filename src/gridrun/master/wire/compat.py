"""The article's gRPC `core.NodeService`, served unchanged (its HTTP `POST /tasks` is
gridrun.master.http.routes.legacy).

A legacy worker calls `AssignTask` and receives command lines, which it splits on single spaces
and runs without reporting back. So it gets only tasks that survive that split (see
`TaskSpec.legacy_ok`), one at a time, and each ends `delivered` — never `succeeded`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator

import grpc

from gridrun import transport
from gridrun._proto import node_pb2
from gridrun.clock import Clock
from gridrun.errors import Unauthorized
from gridrun.master.core.access import Access
from gridrun.master.core.sessions import AssignCmd, WorkerSession
from gridrun.master.core.worker_streams import WorkerStreams

log = logging.getLogger("gridrun.master.compat")


class NodeServicer:
    """Implements core.NodeService (registered with add_NodeServiceServicer_to_server)."""

    def __init__(self, streams: WorkerStreams, clock: Clock, access: Access) -> None:
        self._streams = streams
        self._clock = clock
        self._access = access

    async def _admit(self, context: grpc.aio.ServicerContext[object, object]) -> None:
        """The article's worker sends no credentials, so with join tokens it is refused."""
        refusal = self._access.join_refusal(context.invocation_metadata() or (), context.peer())
        if refusal is not None:
            log.warning("refused a legacy worker from %s: %s", context.peer(), refusal)
            await transport.abort(context, Unauthorized(refusal))

    async def ReportStatus(  # noqa: N802 (the article's method name)
        self,
        request: node_pb2.Request,
        context: grpc.aio.ServicerContext[node_pb2.Request, node_pb2.Response],
    ) -> node_pb2.Response:
        await self._admit(context)  # type: ignore[arg-type]
        return node_pb2.Response(data="ok")

    async def AssignTask(  # noqa: N802 (the article's method name)
        self,
        request: node_pb2.Request,
        context: grpc.aio.ServicerContext[node_pb2.Request, node_pb2.Response],
    ) -> AsyncIterator[node_pb2.Response]:
        await self._admit(context)  # type: ignore[arg-type]
        session = WorkerSession(
            worker_id=f"legacy-{secrets.token_hex(4)}",
            hostname=context.peer(),
            labels={},
            slots=1,
            version="article",
            legacy=True,
            last_seen=self._clock.monotonic(),
        )
        log.info("legacy worker %s connected from %s", session.worker_id, context.peer())
        try:
            await self._streams.hello(session, [], [])
            while (command := await session.next_command()) is not None:
                if isinstance(command, AssignCmd):
                    yield node_pb2.Response(data=" ".join(command.task.spec.argv))
                    await self._streams.delivered(session, command.task.ref)
                session.last_seen = self._clock.monotonic()
        finally:
            session.close(session.close_reason or "stream ended")
            log.info("legacy worker %s disconnected", session.worker_id)
            await self._streams.disconnected(session)
