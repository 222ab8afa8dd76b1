"""A task's output in the order it was written (gridrun.output): the kept tails of both
streams cut by the marks of their runs, tails cut to their last lines."""

from __future__ import annotations

from gridrun.model import Stream, StreamOutput
from gridrun.output import Mark, Segment, interleave, last_lines

OUT, ERR = Stream.STDOUT, Stream.STDERR


def _text(segments: list[Segment]) -> list[tuple[str, bytes]]:
    return [("out" if s.stream is OUT else "err", s.data) for s in segments]


def test_marks_interleave_the_two_streams_as_written() -> None:
    stdout = StreamOutput(b"o1\no2\n", 6)
    stderr = StreamOutput(b"e1\n", 3)
    marks = [Mark(OUT, 0, 100), Mark(ERR, 0, 200), Mark(OUT, 3, 300)]
    segments = interleave(stdout, stderr, marks)
    assert _text(segments) == [("out", b"o1\n"), ("err", b"e1\n"), ("out", b"o2\n")]
    assert [(s.offset, s.at) for s in segments] == [(0, 100), (0, 200), (3, 300)]


def test_output_without_marks_is_stdout_then_stderr() -> None:
    segments = interleave(StreamOutput(b"o1\no2\n", 6), StreamOutput(b"e1\n", 3), [])
    assert _text(segments) == [("out", b"o1\no2\n"), ("err", b"e1\n")]
    assert all(s.at is None for s in segments)


def test_only_kept_bytes_are_cut_and_bytes_before_every_mark_come_first() -> None:
    # stdout kept its last 4 bytes of 10 (the cap); a mark at 2 lies in what was dropped
    stdout = StreamOutput(b"6789", 10)
    stderr = StreamOutput(b"ab", 2)
    marks = [Mark(OUT, 2, 1), Mark(ERR, 0, 2), Mark(OUT, 8, 3)]
    assert _text(interleave(stdout, stderr, marks)) == [
        ("out", b"67"), ("err", b"ab"), ("out", b"89"),
    ]  # fmt: skip
    # an older worker's bytes (no mark) before a newer one's first mark
    marks = [Mark(ERR, 1, 5)]
    assert _text(interleave(StreamOutput(), stderr, marks)) == [("err", b"a"), ("err", b"b")]


def test_the_last_lines_across_segments() -> None:
    segments = [
        Segment(OUT, 0, b"one\ntwo\n", 1),
        Segment(ERR, 0, b"three\nfour", 2),
        Segment(OUT, 8, b" more\n", 3),
    ]
    assert _text(last_lines(segments, 1)) == [("err", b"four"), ("out", b" more\n")]
    assert _text(last_lines(segments, 2)) == [("err", b"three\nfour"), ("out", b" more\n")]
    assert _text(last_lines(segments, 3)) == [
        ("out", b"two\n"), ("err", b"three\nfour"), ("out", b" more\n"),
    ]  # fmt: skip
    assert last_lines(segments, 10) == segments
    assert last_lines(segments, 0) == []
    tail = last_lines(segments, 3)
    assert tail[0].offset == 4  # where "two" begins in stdout
