"""What masters tell each other is read back as it was sent, and a notice this master cannot
read (a newer master's kind, a stray payload) is dropped, not half-understood."""

from __future__ import annotations

from gridrun.store import Notice, NoticeKind


def test_every_kind_of_notice_is_read_back_as_sent() -> None:
    for kind in NoticeKind:
        for subject in ("", "0123456789abcdef01234567", "w 1"):  # (a subject may hold spaces)
            sent = Notice("m1", kind, subject)
            assert Notice.parse(str(sent)) == sent
            assert Notice.parse(str(sent)).kind is kind  # type: ignore[union-attr]


def test_a_notice_this_master_cannot_read_is_dropped() -> None:
    assert Notice.parse("m1 evict w1") is None  # a kind from a newer master
    assert Notice.parse("m1 task") is None  # no subject field at all
    assert Notice.parse("") is None
    assert Notice.parse("m1 TASK x") is None  # kinds are lower case on the wire
