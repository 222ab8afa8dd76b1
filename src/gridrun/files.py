"""Files that travel with tasks: the rules both ends apply to them.

A task's **inputs** are files written into each attempt's own working directory before it
starts; their bytes are uploaded once (`PUT /v1/inputs/SHA256`) and named by their sha256, so
an array's thousand tasks share one copy. Its **collected files** are what its `collect` globs
match in that directory after the attempt ends, sent back by the worker in chunks and kept by
the master beside the task's output. A path is always relative to the working directory and
never leaves it: no `..`, no absolute path, no empty part. The store keeps bytes in chunks of
`CHUNK_BYTES`, so a range of a file is read without reading the rest. Pure; imports `model`.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gridrun.errors import InvalidSpec, RangeNotSatisfiable
from gridrun.model import InputFile

CHUNK_BYTES = 1 << 20  # a stored chunk (the last of a file may be shorter)
DEFAULT_MAX_INPUT = 64 << 20  # a task's inputs, all together (master --max-input)
DEFAULT_MAX_COLLECT = 256 << 20  # a task's collected files per attempt (master --max-collect)
MAX_INPUTS = 1000  # files one task takes
MAX_GLOBS = 64  # --collect patterns one task has
MAX_PATH_BYTES = 1024
MAX_FILES = 10_000  # files one attempt's globs may collect (the rest: dropped, said so)
DIGEST = re.compile(r"[0-9a-f]{64}")


class FileState(enum.StrEnum):
    """A collected file as the master holds it."""

    COMPLETE = "complete"  # every byte, checked against its sha256
    INCOMPLETE = "incomplete"  # its upload began and did not end (the worker or master died)
    DROPPED = "dropped"  # not sent: over the budget, not a regular file, unreadable (reason)


@dataclass(frozen=True, slots=True)
class TaskFile:
    """One collected file of one attempt."""

    task_id: str
    attempt: int
    path: str
    state: FileState
    size: int
    digest: str = ""
    mode: int = 0o644
    reason: str = ""
    created_at: int = 0


def check_path(path: str, what: str = "a file name") -> str:
    """`path` if it is a relative path inside the working directory; InvalidSpec if not."""
    if not path:
        raise InvalidSpec(f"{what} must not be empty")
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise InvalidSpec(f"{what} is longer than {MAX_PATH_BYTES} bytes: {path[:60]!r}...")
    if "\0" in path or any(ord(c) < 32 for c in path):
        raise InvalidSpec(f"{what} must not hold control characters: {path!r}")
    if path.startswith("/"):
        raise InvalidSpec(f"{what} must be relative to the task's working directory: {path!r}")
    parts = path.split("/")
    if ".." in parts:
        raise InvalidSpec(f"{what} must not go up out of the working directory ('..'): {path!r}")
    if any(p in ("", ".") for p in parts):
        raise InvalidSpec(f"{what} must not have empty or '.' parts: {path!r}")
    return path


def check_inputs(inputs: Sequence[InputFile]) -> tuple[InputFile, ...]:
    """The inputs in order, each name valid and given once, none a directory of another."""
    if len(inputs) > MAX_INPUTS:
        raise InvalidSpec(f"a task takes at most {MAX_INPUTS} input files ({len(inputs)} given)")
    names: set[str] = set()
    for item in inputs:
        check_path(item.name, "an input's name")
        if not DIGEST.fullmatch(item.digest):
            raise InvalidSpec(f"input {item.name!r}: sha256 must be 64 lowercase hex digits")
        if item.name in names:
            raise InvalidSpec(f"input {item.name!r} is given twice")
        if not 0 <= item.mode <= 0o777:
            raise InvalidSpec(f"input {item.name!r}: mode must be permission bits (0 to 0o777)")
        names.add(item.name)
    for name in names:
        parts = name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in names:
                raise InvalidSpec(f"input {name!r} would be inside input {'/'.join(parts[:i])!r}")
    return tuple(inputs)


def check_globs(globs: Sequence[str]) -> tuple[str, ...]:
    if len(globs) > MAX_GLOBS:
        raise InvalidSpec(f"a task has at most {MAX_GLOBS} --collect patterns")
    for glob in globs:
        check_path(glob, "a --collect pattern")
    return tuple(dict.fromkeys(globs))


def matches(path: str, globs: Sequence[str]) -> bool:
    """Whether a path (relative, '/'-separated) is matched by one of the globs: `*` and `?`
    stay within one directory, `**` spans any number of them."""
    return any(_glob(g).fullmatch(path) for g in globs)


@functools.lru_cache(maxsize=1024)  # (a worker lives long; its tasks' globs are many)
def _glob(glob: str) -> re.Pattern[str]:
    parts = glob.split("/")
    regex = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
            continue
        regex += _part(part) + ("" if last else "/")
    return re.compile(regex)


def _part(part: str) -> str:
    """One path part's glob as a regex: * and ? never match a '/'."""
    out, i = [], 0
    while i < len(part):
        c = part[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (close := part.find("]", i + 2)) != -1:
            inner = part[i + 1 : close]
            negate = inner.startswith("!")
            inner = re.escape(inner[1:] if negate else inner).replace("\\-", "-")
            out.append(f"[^/{inner}]" if negate else f"[{inner}]")  # (never a '/')
            i = close
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def sha256_of(path: Path) -> str:
    """A file's sha256 (hex), read a MiB at a time: how the client names an input and the
    worker checks one it wrote."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(CHUNK_BYTES):
            digest.update(piece)
    return digest.hexdigest()


def chunk_range(size: int, start: int, end: int) -> range:
    """The chunks that hold bytes start..end-1 of a file of `size` bytes."""
    if start >= min(end, size):
        return range(0)
    return range(start // CHUNK_BYTES, (min(end, size) - 1) // CHUNK_BYTES + 1)


RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The bytes start..end-1 a Range header asks of a file of `size` bytes (RFC 9110 14.1):
    None for the whole file (no header, one that is not a single valid byte range: a
    server may ignore those); RangeNotSatisfiable for a range outside the file."""
    m = RANGE.fullmatch((header or "").strip())
    if m is None or not any(m.groups()):
        return None
    first, last = m.groups()
    if not first:  # the last N bytes
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiable(f"the file is {size} bytes: {header!r} asks none", size)
        return max(0, size - int(last)), size
    start = int(first)
    if last and int(last) < start:
        return None  # not a valid range: ignored
    if start >= size:
        raise RangeNotSatisfiable(f"the file is {size} bytes: {header!r} is outside it", size)
    return start, min(size, int(last) + 1) if last else size


def input_blob(key: str) -> str:
    """The store's key for an input's chunks (`key`: its owner's name and sha256)."""
    return f"i/{key}"


def file_blob(task_id: str, attempt: int, path: str) -> str:
    """The store's key for a collected file's chunks (a task's keys share the prefix
    `task_blobs(task_id)[0]`)."""
    return f"f/{task_id}/{attempt}/{path}"


def task_blobs(task_id: str) -> tuple[str, str]:
    """The range [low, high) of the keys of a task's collected files."""
    return f"f/{task_id}/", f"f/{task_id}0"  # ('0' is the character after '/')
