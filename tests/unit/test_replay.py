"""The worker's replay of unacknowledged output: what it keeps, resends and counts as lost."""

from __future__ import annotations

from gridrun.model import AttemptRef, Stream
from gridrun.worker.replay import Replay

A, B = AttemptRef("a", 1), AttemptRef("b", 1)


def test_sent_output_is_kept_and_resent_from_its_offset() -> None:
    replay = Replay(budget=100, cap=10)
    replay.record(A, 1, 0, b"hello ", sent=True)
    replay.record(A, 1, 6, b"world!", sent=True)  # 12 bytes: the cap keeps the last 10
    replay.record(A, 2, 0, b"oops", sent=True)
    assert replay.resend({A}) == [(A, 1, 2, b"llo world!", 0), (A, 2, 0, b"oops", 0)]
    assert replay.dropped == 0  # trimmed bytes had been sent


def test_unsent_output_trimmed_by_the_budget_is_counted_oldest_first() -> None:
    replay = Replay(budget=8, cap=100)
    replay.record(A, 1, 0, b"aaaa", sent=False)
    replay.record(B, 1, 0, b"bbbbbb", sent=False)  # 10 > 8: two of A's bytes go
    assert replay.dropped == 2
    assert replay.resend({A, B}) == [(A, 1, 2, b"aa", 0), (B, 1, 0, b"bbbbbb", 0)]
    replay.record(B, 1, 6, b"cc", sent=True)  # resent above, so A's next trim is no loss
    assert replay.dropped == 2


def test_acknowledged_or_settled_attempts_are_forgotten() -> None:
    replay = Replay(budget=100, cap=100)
    replay.record(A, 1, 0, b"x", sent=True)
    replay.record(B, 1, 0, b"y", sent=True)
    replay.forget(A)
    assert replay.resend({A, B}) == [(B, 1, 0, b"y", 0)]
    assert replay.resend(set()) == []
    replay.record(B, 1, 1, b"z", sent=True)  # forgotten above: a fresh tail from offset 1
    assert replay.resend({B}) == [(B, 1, 1, b"z", 0)]


def test_a_gap_restarts_the_tail_at_the_new_offset() -> None:
    replay = Replay(budget=100, cap=100)
    replay.record(A, 1, 0, b"abc", sent=False)
    replay.record(A, 1, 10, b"xyz", sent=False)
    assert replay.dropped == 3
    assert replay.resend({A}) == [(A, 1, 10, b"xyz", 0)]


def test_what_is_sent_again_goes_in_the_order_it_was_written() -> None:
    replay = Replay(budget=1000, cap=100)
    replay.record(A, Stream.STDOUT, 0, b"o1\n", sent=True, written_at=10)
    replay.record(A, Stream.STDERR, 0, b"e1\n", sent=False, written_at=20)
    replay.record(A, Stream.STDOUT, 3, b"o2\n", sent=False, written_at=30)
    replay.record(A, Stream.STDOUT, 6, b"o3\n", sent=False)  # (continues the run of o2)
    assert replay.resend({A}) == [
        (A, Stream.STDOUT, 0, b"o1\n", 10),
        (A, Stream.STDERR, 0, b"e1\n", 20),
        (A, Stream.STDOUT, 3, b"o2\no3\n", 30),
    ]
