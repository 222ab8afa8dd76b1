"""A task's output in the order it was written, across stdout and stderr.

The store keeps each stream's tail (`StreamOutput`) and, beside it, `Mark`s: where in a stream a
run of output began, and when the worker read it. A worker starts a run when the stream
changes (or a second has passed): so the marks, in the order they were made, say how the two
streams interleave. `interleave` cuts the kept tails into `Segment`s in that order. Output of
a worker that makes no marks (an older one) comes out as it always did: stdout, then stderr.
The order is the order the worker read the two pipes: writes closer together than one read of
the worker's may come out either way round, as with any reader of two pipes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gridrun.model import Stream, StreamOutput

RUN_SPLIT_MS = 1000  # a run of one stream is marked again after this long (its timestamps)


@dataclass(frozen=True, slots=True)
class Mark:
    """A run of `stream` began at byte `offset`, read at `at` (epoch ms)."""

    stream: Stream
    offset: int
    at: int


@dataclass(frozen=True, slots=True)
class Segment:
    """Bytes of one stream, from byte `offset`, written from `at` (epoch ms; None: unknown)."""

    stream: Stream
    offset: int
    data: bytes
    at: int | None


def interleave(stdout: StreamOutput, stderr: StreamOutput, marks: Sequence[Mark]) -> list[Segment]:
    """The kept output as segments in the order it was written (marks in the order made)."""
    kept = {Stream.STDOUT: stdout, Stream.STDERR: stderr}
    # where each mark's run ends: the next mark of its stream, else the stream's end
    ends: dict[int, int] = {}
    last: dict[Stream, int] = {}
    for i, mark in enumerate(marks):
        if mark.stream in last:
            ends[last[mark.stream]] = mark.offset
        last[mark.stream] = i
    segments: list[Segment] = []
    for stream, out in kept.items():  # bytes before the first mark: written before any
        first = next((m.offset for m in marks if m.stream is stream), out.total)
        _cut(segments, stream, out, out.dropped, first, None)
    for i, mark in enumerate(marks):
        out = kept[mark.stream]
        _cut(segments, mark.stream, out, mark.offset, ends.get(i, out.total), mark.at)
    return segments


def _cut(
    into: list[Segment], stream: Stream, out: StreamOutput, start: int, end: int, at: int | None
) -> None:
    """The kept bytes of `out` in [start, end), if any, as one segment."""
    start, end = max(start, out.dropped), min(end, out.total)
    if start < end:
        data = out.data[start - out.dropped : end - out.dropped]
        into.append(Segment(stream, start, data, at))


def last_lines(segments: Sequence[Segment], n: int) -> list[Segment]:
    """The segments cut to the last `n` lines of their whole (a line ends at b"\\n"; text
    after the last newline counts as a line)."""
    if n <= 0:
        return []
    seen = 0
    for i in range(len(segments) - 1, -1, -1):
        seg = segments[i]
        data = seg.data
        # a newline that ends the whole output does not start another line
        stop = len(data) - 1 if i == len(segments) - 1 and data.endswith(b"\n") else len(data)
        pos = stop
        while True:
            pos = data.rfind(b"\n", 0, pos)
            if pos < 0:
                break
            seen += 1
            if seen == n:
                cut = pos + 1
                head = Segment(seg.stream, seg.offset + cut, data[cut:], seg.at)
                return ([head] if head.data else []) + list(segments[i + 1 :])
    return list(segments)
