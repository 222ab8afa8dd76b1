"""The pure rules of files that travel with tasks (gridrun.files): names, globs, the chunks
that hold a range of bytes, and the range an HTTP Range header asks for."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridrun.errors import InvalidSpec, RangeNotSatisfiable
from gridrun.files import CHUNK_BYTES, byte_range, check_globs, check_path, chunk_range, matches


@pytest.mark.parametrize(
    "bad", ["", "/etc/passwd", "../a", "a/../../b", "a//b", "./a", "a/.", "a\nb", "x" * 1025]
)
def test_a_name_outside_the_working_directory_is_refused(bad: str) -> None:
    with pytest.raises(InvalidSpec):
        check_path(bad)


def test_names_inside_it_are_kept() -> None:
    for good in ("a", "out/r.txt", "..a", "a..", "dir/.hidden", "é/ü"):
        assert check_path(good) == good
    assert check_globs(["*.txt", "out/**", "*.txt"]) == ("*.txt", "out/**")  # once each
    with pytest.raises(InvalidSpec):
        check_globs(["../*"])


@pytest.mark.parametrize(
    ("path", "glob", "hit"),
    [
        ("r.txt", "*.txt", True),
        ("out/r.txt", "*.txt", False),  # * stays within a directory
        ("out/r.txt", "*/*.txt", True),
        ("out/a/b/r.txt", "out/**/*.txt", True),
        ("out/r.txt", "out/**/*.txt", True),  # ** is any number of directories, none too
        ("other/r.txt", "out/**", False),
        ("out/a/b", "out/**", True),
        ("a/b", "a?b", False),  # ? never matches a '/'
        ("axb", "a?b", True),
        ("a1", "a[0-9]", True),
        ("ab", "a[0-9]", False),
        ("ab", "a[!0-9]", True),
        ("a1", "a[!0-9]", False),
        ("a/b", "a[!x]b", False),  # nor does a negated class
        ("a.b", "a.b", True),  # a dot is a dot
        ("axb", "a.b", False),
        ("a+b(c)", "a+b(c)", True),
    ],
)
def test_globs_match_as_the_shell_does_and_star_star_spans_directories(
    path: str, glob: str, hit: bool
) -> None:
    assert matches(path, [glob]) is hit


@given(
    st.integers(0, 5 * CHUNK_BYTES),
    st.integers(0, 6 * CHUNK_BYTES),
    st.integers(0, 6 * CHUNK_BYTES),
)
def test_the_chunks_of_a_range_hold_exactly_its_bytes(size: int, start: int, end: int) -> None:
    chunks = chunk_range(size, start, end)
    stop = min(end, size)
    if start >= stop:  # no byte wanted: no chunk read
        assert len(chunks) == 0
        return
    spans = [(seq * CHUNK_BYTES, min(size, (seq + 1) * CHUNK_BYTES)) for seq in chunks]
    assert spans[0][0] <= start
    assert spans[-1][1] >= stop
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # no gap
    assert all(first < stop and last > start for first, last in spans)  # none for nothing


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-", 10, (0, 10)),
        ("bytes=2-4", 10, (2, 5)),  # last is inclusive
        ("bytes=2-400", 10, (2, 10)),  # a last beyond the end is the end
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-30", 10, (0, 10)),
        ("bytes=9-9", 10, (9, 10)),
        ("bytes=5-3", 10, None),  # not a valid range: ignored, the whole file
        ("bytes=0-1,4-5", 10, None),  # several ranges: the whole file (a server may)
        ("items=0-1", 10, None),
        ("bytes=-", 10, None),
    ],
)
def test_a_range_header_asks_for_those_bytes(
    header: str | None, size: int, expected: tuple[int, int] | None
) -> None:
    assert byte_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_a_range_outside_the_file_is_not_satisfiable_and_says_its_size(
    header: str, size: int
) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        byte_range(header, size)
    assert caught.value.size == size
