"""The process tree as /proc shows it, and prctl: what the subreaper containment and `gridrun
up` need of the kernel beyond cgroups."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Collection
from pathlib import Path

from gridrun.model import AttemptRef

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def prctl(option: int, value: int) -> bool:
    """prctl(2) with one argument; False where it failed or there is none. Safe in a forked
    child before exec: the symbol comes from the process's own libc, nothing is spawned."""
    call = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
    return call is not None and call(option, value, 0, 0, 0) == 0


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def descendants(root: int) -> set[int]:
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat(stat.parent.name)
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def tagged_descendants(root: int, ref: AttemptRef) -> set[int]:
    """Processes below `root` whose environment carries this attempt's tag."""
    tag = (f"GRIDRUN_TASK_ID={ref.task_id}".encode(), f"GRIDRUN_ATTEMPT={ref.attempt}".encode())
    found = set()
    for pid in descendants(root):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if tag[0] in env and tag[1] in env:
            found.add(pid)
    return found


def reap_orphans(ours: Collection[int] = ()) -> None:
    """Reap children of ours that exited and that no Popen waits for (re-parented orphans);
    `ours` are the attempts' main processes, which their executions reap (with their exit
    status, which must not be taken from them)."""
    for pid in descendants(os.getpid()) - set(ours):
        fields = _stat(pid)
        if fields is not None and fields[0] == "Z":
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
