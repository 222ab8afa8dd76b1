"""Following a task live: its output and state as Server-Sent Events until it ends.

The store stays the truth: on every change the follower re-reads the task and the kept output
and sends what is new. A follower that falls behind the output cap is told how many bytes it
missed (a `gap` event) rather than being sent bytes that are no longer kept.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import json
from collections.abc import AsyncIterator
from typing import Any

from gridrun.master.core.service import Service
from gridrun.model import Stream, StreamOutput, Task

KEEPALIVE_S = 15.0  # a comment line now and then keeps proxies from closing an idle stream


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _Stream:
    """What one of stdout/stderr has sent so far; decodes UTF-8 across chunk boundaries, or
    (`raw`) sends the bytes themselves, base64-encoded."""

    def __init__(self, name: str, start: int, raw: bool = False) -> None:
        self.name = name
        self.raw = raw
        self.sent = start  # bytes of the stream delivered or reported as dropped
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def news(
        self, out: StreamOutput, final: bool, upto: int | None = None, at: int | None = None
    ) -> list[bytes]:
        """What is new of this stream, up to stream offset `upto` (None: its end); `at`, when
        the worker read those bytes (epoch ms), is sent with them."""
        events = []
        first_kept = out.total - len(out.data)
        if first_kept > self.sent:
            events.append(sse("gap", {"stream": self.name, "dropped": first_kept - self.sent}))
            self.sent = first_kept
            self._decoder.reset()
        end = out.total if upto is None else min(upto, out.total)
        if end > self.sent:
            chunk = out.data[self.sent - first_kept : end - first_kept]
            offset, self.sent = self.sent, end
            data: dict[str, Any] = {"stream": self.name, "offset": offset, "bytes": len(chunk)}
            if at is not None:
                data["at"] = at
            if self.raw:
                data["data"] = base64.b64encode(chunk).decode()
            else:
                data["text"] = self._decoder.decode(chunk, final=final and end == out.total)
            events.append(sse("output", data))
        return events


def _state(task: Task) -> dict[str, Any]:
    return {
        "state": str(task.state),
        "attempt": task.attempt,
        "worker_id": task.worker_id,
        "exit_code": task.exit_code,
        "signal": task.signal,
        "error": task.error,
    }


async def follow(
    service: Service, task_id: str, stdout_from: int = 0, stderr_from: int = 0, raw: bool = False
) -> AsyncIterator[bytes]:
    """Events for one task: `state` on every change; `output` chunks (byte offset and length
    in the stream, and the text: UTF-8, an invalid byte shown as U+FFFD); `gap` when bytes were
    dropped before they could be sent; a last `end` (the terminal state) before it closes.
    Ends early, without `end`, when the master shuts down. `*_from` resume a follow that was
    cut off: bytes before those offsets are not sent again. With `raw`, an output event carries
    `data`, the bytes exactly (base64), instead of `text`: what `gridrun run` writes. Output
    events come in the order the output was written across both streams (gridrun.output),
    with `at` (epoch ms the worker read them) where the worker said."""
    by_number = {
        Stream.STDOUT: _Stream("stdout", stdout_from, raw),
        Stream.STDERR: _Stream("stderr", stderr_from, raw),
    }
    last_state: dict[str, Any] | None = None
    with service.watch(task_id) as changed:
        while True:
            changed.clear()
            task = await service.get(task_id)
            out = await service.output(task_id)
            state = _state(task)
            if state != last_state:
                yield sse("state", state)
                last_state = state
            kept = {Stream.STDOUT: out.stdout, Stream.STDERR: out.stderr}
            for segment in out.in_order():  # (in the order written, across both streams)
                end = segment.offset + len(segment.data)
                for event in by_number[segment.stream].news(
                    kept[segment.stream], task.terminal, end, segment.at
                ):
                    yield event
            for number, stream in by_number.items():  # (a gap at the end; the decoder's last)
                for event in stream.news(kept[number], final=task.terminal):
                    yield event
            if task.terminal:
                yield sse("end", state)
                return
            waits = {
                asyncio.ensure_future(changed.wait()),
                asyncio.ensure_future(service.stopping.wait()),
            }
            try:
                done, _ = await asyncio.wait(
                    waits, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waits:
                    waiter.cancel()
            if service.stopping.is_set():
                return
            if not done:
                yield b": keep-alive\n\n"
