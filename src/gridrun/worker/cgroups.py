"""Linux control groups, as the worker uses them: finding the hierarchies, and one group per
attempt across them (limits, kill, usage).

Hosts differ. A modern one has one cgroup v2 hierarchy with the controllers enabled; an older
or hybrid one has v1 hierarchies (`memory`, `pids`, `cpu`, `cpuacct`, `freezer`, `blkio`, each
mounted alone or together), maybe beside a v2 hierarchy with no controllers (`unified`). The
hierarchies are found from /proc/self/mountinfo and this process's place in each from
/proc/self/cgroup, never from a fixed path. An attempt's group is one directory in each
hierarchy that is useful: v2 for membership, `cgroup.kill` and CPU time (`cpu.stat` is always
there), plus whichever controllers v2 has enabled; v1 for the controllers v2 lacks, and the
v1 freezer to kill a group without a race where v2 cannot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gridrun import model

# blkio (v1) is left out: a group in one more hierarchy for each attempt (a mkdir, a join, an
# rmdir) cost more than the I/O figures are worth; v2's io controller gives them for free
WANTED = ("memory", "pids", "cpu", "cpuacct", "freezer", "io")
KILL_WAIT_S = 2.0  # a freeze or a kill takes effect within this
CPU_PERIOD_US = 100_000


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """A mounted cgroup hierarchy and this process's group in it."""

    version: int  # 1 or 2
    mount: Path
    controllers: frozenset[str]  # v1: those mounted here; v2: those enabled for our children
    own: Path  # this process's group, as a directory under `mount`


def _unescape(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def parse_mounts(mountinfo: str) -> list[tuple[int, Path, str, frozenset[str]]]:
    """(version, mount point, root inside the hierarchy, v1 controllers) of each cgroup mount."""
    mounts: list[tuple[int, Path, str, frozenset[str]]] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        fstype, super_options = fields[sep + 1], fields[sep + 3] if len(fields) > sep + 3 else ""
        root, point = _unescape(fields[3]), Path(_unescape(fields[4]))
        if fstype == "cgroup2":
            mounts.append((2, point, root, frozenset()))
        elif fstype == "cgroup":
            controllers = frozenset(o for o in super_options.split(",") if o in WANTED)
            if controllers:  # named hierarchies (name=systemd) hold no controller
                mounts.append((1, point, root, controllers))
    return mounts


def parse_own(proc_cgroup: str) -> tuple[str | None, dict[str, str]]:
    """This process's v2 path, and its v1 path by controller, from /proc/self/cgroup."""
    v2: str | None = None
    v1: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and not controllers:
            v2 = path
        for controller in controllers.split(","):
            if controller:
                v1[controller] = path
    return v2, v1


def _inside(mount: Path, root: str, path: str) -> Path | None:
    """The directory of cgroup `path` under a mount of the hierarchy's `root`."""
    if not path.startswith(root):
        return None  # our group is not visible under this mount
    return mount / path[len(root) :].lstrip("/")


def discover(mountinfo: str | None = None, proc_cgroup: str | None = None) -> list[Hierarchy]:
    """The cgroup hierarchies this process can see, with its own group in each."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    if proc_cgroup is None:
        proc_cgroup = Path("/proc/self/cgroup").read_text()
    own_v2, own_v1 = parse_own(proc_cgroup)
    found: list[Hierarchy] = []
    seen: set[frozenset[str]] = set()
    for version, point, root, controllers in parse_mounts(mountinfo):
        if version == 2:
            own = _inside(point, root, own_v2) if own_v2 is not None else None
            if own is None or any(h.version == 2 for h in found):
                continue
            enabled = words(own / "cgroup.controllers")
            found.append(Hierarchy(2, point, frozenset(enabled) & frozenset(WANTED), own))
        elif controllers not in seen:
            path = own_v1.get(next(iter(controllers)))
            own = _inside(point, root, path) if path is not None else None
            if own is not None:
                seen.add(controllers)
                found.append(Hierarchy(1, point, controllers, own))
    return found


def words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
    except OSError:
        return False
    return True


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _keyed(path: Path) -> dict[str, int]:
    """A flat keyed file (`key value` lines) as a dict."""
    values: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            values[key] = int(value)
    return values


@dataclass(frozen=True, slots=True)
class Limits:
    memory_bytes: int | None = None
    cpu: float | None = None  # CPUs (a quota of cpu x the period)
    pids: int | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_s: float | None = None  # user + system
    peak_memory_bytes: int | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None
    oom_kills: int = 0

    def measured(self) -> model.Usage:
        return model.Usage(
            self.cpu_s, self.peak_memory_bytes, self.io_read_bytes, self.io_write_bytes
        )


@dataclass
class Group:
    """One attempt's group: a directory in each hierarchy used (v2 first, if any)."""

    dirs: dict[str, Path]  # controller (or "v2") -> directory
    limits: Limits = field(default_factory=Limits)

    @property
    def v2(self) -> Path | None:
        return self.dirs.get("v2")

    @property
    def frozen_by(self) -> Path | None:
        """The v1 freezer group, where v2 cannot kill."""
        return self.dirs.get("freezer") if self.v2 is None else None

    @property
    def procs_files(self) -> list[Path]:
        """Where the first process writes itself, so all it starts stays inside."""
        return [d / "cgroup.procs" for d in self.paths]

    @property
    def paths(self) -> list[Path]:
        return list(dict.fromkeys(self.dirs.values()))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for directory in self.paths:
            found.update(int(p) for p in words(directory / "cgroup.procs") if p.isdigit())
        return found

    def populated(self) -> bool:
        if self.v2 is not None:
            events = _keyed(self.v2 / "cgroup.events")
            if "populated" in events:
                return events["populated"] == 1
        return bool(self.pids())

    def kill(self) -> None:
        """SIGKILL every process in the group, including those forked meanwhile."""
        if self.v2 is not None and write(self.v2 / "cgroup.kill", "1"):
            return
        freezer = self.frozen_by
        if freezer is not None and write(freezer / "freezer.state", "FROZEN"):
            deadline = time.monotonic() + KILL_WAIT_S
            while time.monotonic() < deadline:  # frozen: nothing in it can fork any more
                if (freezer / "freezer.state").read_text().strip() == "FROZEN":
                    break
                time.sleep(0.001)
            _kill_all(self.pids())
            write(freezer / "freezer.state", "THAWED")
            return
        for _ in range(100):  # no freezer: kill until nothing is left (a fork may race)
            pids = self.pids()
            if not pids:
                return
            _kill_all(pids)
            time.sleep(0.005)

    def usage(self) -> Usage:
        cpu_s = peak = read = written = None
        oom = 0
        memory, cpuacct = self.dirs.get("memory"), self.dirs.get("cpuacct")
        if self.v2 is not None:
            stat = _keyed(self.v2 / "cpu.stat")
            if "usage_usec" in stat:
                cpu_s = stat["usage_usec"] / 1e6
        if cpu_s is None and cpuacct is not None:
            ns = _read_int(cpuacct / "cpuacct.usage")
            cpu_s = ns / 1e9 if ns is not None else None
        if memory is not None and memory == self.v2:
            peak = _read_int(memory / "memory.peak")
            oom = _keyed(memory / "memory.events").get("oom_kill", 0)
        elif memory is not None:
            peak = _read_int(memory / "memory.max_usage_in_bytes")
            oom = _keyed(memory / "memory.oom_control").get("oom_kill", 0)
        io = self.dirs.get("io")
        if io is not None:  # (v2 only: v1 blkio is not used, see WANTED)
            read = written = 0
            for line in _lines(io / "io.stat"):
                values = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
                read += int(values.get("rbytes", 0))
                written += int(values.get("wbytes", 0))
        return Usage(cpu_s, peak, read, written, oom)

    def remove(self) -> list[Path]:
        """Remove the directories of an empty group, at once (an attempt's group has no
        children); those still busy are returned (see `rmdirs`)."""
        return rmdirs(self.paths)


def rmdirs(directories: Iterable[Path]) -> list[Path]:
    """rmdir each, at once; those still busy (a killed process takes a moment to leave) are
    returned, for the caller to try again later rather than wait now."""
    busy = []
    for directory in directories:
        try:
            directory.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            busy.append(directory)
    return busy


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def _kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def remove_tree(directory: Path) -> None:
    """rmdir a group and the groups below it, deepest first (a group dir holds only control
    files, which rmdir takes with it)."""
    if not directory.is_dir():
        return
    for child in sorted((p for p in directory.iterdir() if p.is_dir()), reverse=True):
        remove_tree(child)
    for _ in range(50):
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)  # still draining: a killed process takes a moment to leave


def children(directory: Path) -> Iterator[Path]:
    if directory.is_dir():
        yield from (p for p in directory.iterdir() if p.is_dir())


def kill_subtree(
    bases: Iterable[Path], v2_base: Path | None, freezer_base: Path | None, remove: bool = False
) -> None:
    """Kill every process in the groups below these bases (a worker's attempts), then remove
    those groups (and, with `remove`, the bases too). v2: one write to the base's
    `cgroup.kill`; v1: freeze the base (a v1 freezer freezes its descendants), kill every
    process listed below, thaw."""
    bases = list(bases)
    below = {str(n): p for n, p in enumerate(p for base in bases for p in _walk(base))}
    if v2_base is not None and v2_base.is_dir():
        write(v2_base / "cgroup.kill", "1")
    elif freezer_base is not None and freezer_base.is_dir():
        below["freezer"] = freezer_base  # (also among `below`: listed twice, read once)
    group = Group(dirs=below)
    if group.pids():
        group.kill()
    for base in bases:
        if remove:
            remove_tree(base)
        else:
            for child in list(children(base)):
                remove_tree(child)


def _walk(directory: Path) -> Iterator[Path]:
    if not directory.is_dir():
        return
    yield directory
    for child in children(directory):
        yield from _walk(child)
