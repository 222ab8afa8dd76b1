"""The output of attempts whose result the master has not acknowledged, kept to send again.

Output sent on a stream is not acknowledged on its own: a master that dies (or a stream that
breaks) can take the last chunks with it, and output written while no master listens has
nowhere to go. So the worker keeps the tail of each stream of each attempt, up to the master's
output cap, until the attempt's Finished is acknowledged, and sends those tails again on every
reconnect, before any Finished. The master skips bytes it already holds (by offset), so
sending twice is harmless. All tails together are bounded by `budget` bytes: beyond it the
oldest bytes go, and those that no stream ever carried are counted as dropped. The marks of
the runs (gridrun.output) are kept with the tails, so what is sent again goes in the order it
was written, across both streams, as it did the first time.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from gridrun.model import AttemptRef, Stream, StreamOutput
from gridrun.output import Mark, interleave

MAX_MARKS = 20_000  # per attempt kept to send again (as the master keeps per stream)


@dataclass
class Tail:
    data: bytearray
    end: int = 0  # stream offset just after the last byte
    sent: int = 0  # bytes before this offset were put on some stream

    @property
    def start(self) -> int:
        return self.end - len(self.data)


class Replay:
    def __init__(self, budget: int, cap: int) -> None:
        self.budget = budget
        self.cap = cap  # per stream, as the master keeps
        self.dropped = 0  # bytes no stream ever carried, trimmed away
        self._tails: OrderedDict[AttemptRef, dict[Stream, Tail]] = OrderedDict()
        self._marks: dict[AttemptRef, list[Mark]] = {}
        self._size = 0

    def record(
        self,
        ref: AttemptRef,
        stream: Stream,
        offset: int,
        data: bytes,
        sent: bool,
        written_at: int = 0,
    ) -> None:
        tail = self._tails.setdefault(ref, {}).setdefault(stream, Tail(bytearray()))
        if written_at:
            marks = self._marks.setdefault(ref, [])
            marks.append(Mark(stream, offset, written_at))
            if len(marks) > MAX_MARKS:  # (their bytes then go first, unordered)
                del marks[: len(marks) - MAX_MARKS]
        if offset != tail.end:  # a gap (chunks dropped before us): what we held is not contiguous
            self._trim(tail, len(tail.data))
            tail.end = tail.sent = offset
        tail.data += data
        tail.end += len(data)
        self._size += len(data)
        if sent:
            tail.sent = tail.end
        if len(tail.data) > self.cap:
            self._trim(tail, len(tail.data) - self.cap)
        for oldest in list(self._tails.values()):
            for each in oldest.values():
                if self._size <= self.budget:
                    return
                self._trim(each, min(len(each.data), self._size - self.budget))

    def _trim(self, tail: Tail, n: int) -> None:
        start = tail.start
        self.dropped += max(0, start + n - max(tail.sent, start))
        del tail.data[:n]
        self._size -= n

    def forget(self, ref: AttemptRef) -> None:
        self._marks.pop(ref, None)
        for tail in self._tails.pop(ref, {}).values():
            self._size -= len(tail.data)

    def resend(self, refs: set[AttemptRef]) -> list[tuple[AttemptRef, Stream, int, bytes, int]]:
        """(ref, stream, offset, bytes, written_at) to send on a new stream for the attempts
        in `refs`, in the order written; attempts not among them are settled elsewhere and
        forgotten."""
        chunks = []
        for ref in list(self._tails):
            if ref not in refs:
                self.forget(ref)
                continue
            tails = self._tails[ref]
            kept = {s: StreamOutput(bytes(tail.data), tail.end) for s, tail in tails.items()}
            empty = StreamOutput()
            segments = interleave(
                kept.get(Stream.STDOUT, empty), kept.get(Stream.STDERR, empty),
                self._marks.get(ref, []),
            )  # fmt: skip
            for segment in segments:
                chunks.append((ref, segment.stream, segment.offset, segment.data, segment.at or 0))
            for tail in tails.values():
                tail.sent = tail.end
        return chunks
