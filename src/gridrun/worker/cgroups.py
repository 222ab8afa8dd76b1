"""Linux control groups, as the worker uses them: one group per attempt across the hierarchies
gridrun.worker.hierarchies found (limits, kill, usage), and the worker's subtree of them.

An attempt's group is one directory in each hierarchy that is useful: v2 for membership,
`cgroup.kill` and CPU time (`cpu.stat` is always there), plus whichever controllers v2 has
enabled; v1 for the controllers v2 lacks, and the v1 freezer to kill a group without a race
where v2 cannot.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gridrun import model

KILL_WAIT_S = 2.0  # a freeze or a kill takes effect within this
CPU_PERIOD_US = 100_000
RECYCLE_CHARGED_MAX = 1 << 20  # a group left holding more memory is removed, not recycled


def words(path: Path, read: Callable[[Path], str] | None = None) -> list[str]:
    try:
        return (read or _read)(path).split()
    except OSError:
        return []


def write(path: Path, value: str) -> bool:
    """Write a control file (with the os calls: several per attempt, so the cheapest)."""
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError:
        return False
    return True


def _read(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def _read_int(path: Path, read: Callable[[Path], str] | None = None) -> int | None:
    try:
        return int((read or _read)(path).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _keyed(path: Path, read: Callable[[Path], str] | None = None) -> dict[str, int]:
    """A flat keyed file (`key value` lines) as a dict."""
    values: dict[str, int] = {}
    try:
        text = (read or _read)(path)
    except OSError:
        return values
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            values[key] = int(value)
    return values


class Files:
    """A group's control files, kept open: a group that serves attempt after attempt reads
    and writes the same few files, and each then costs one call, not three (a control file
    is read afresh from offset 0)."""

    def __init__(self) -> None:
        self._fds: dict[tuple[Path, int], int] = {}

    def fd(self, path: Path, flags: int) -> int:
        fd = self._fds.get((path, flags))
        if fd is None:
            fd = self._fds[path, flags] = os.open(path, flags)
        return fd

    def read(self, path: Path) -> str:
        fd, chunks, offset = self.fd(path, os.O_RDONLY), [], 0
        while chunk := os.pread(fd, 65536, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks).decode()

    def put(self, path: Path, value: str) -> None:
        os.pwrite(self.fd(path, os.O_WRONLY), value.encode(), 0)

    def write(self, path: Path, value: str) -> bool:
        try:
            self.put(path, value)
        except OSError:
            return False
        return True

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


@dataclass(frozen=True, slots=True)
class GroupLimits:
    memory_bytes: int | None = None
    cpu: float | None = None  # CPUs (a quota of cpu x the period)
    pids: int | None = None


@dataclass(frozen=True, slots=True)
class GroupUsage:
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
    """One attempt's group: a directory in each hierarchy used (v2 first, if any). A v1
    group may serve attempt after attempt (see `recycle`)."""

    dirs: dict[str, Path]  # controller (or "v2") -> directory
    limits: GroupLimits = field(default_factory=GroupLimits)  # as written (a new group has none)
    oom_base: int = 0  # OOM kills counted before this attempt (a recycled group)
    io_base: tuple[int, int] = (0, 0)  # v1 bytes read and written before it, likewise
    thaw: bool = False  # a kill froze it: thawed before it serves again
    files: Files = field(default_factory=Files, repr=False)

    def set_limits(self, limits: GroupLimits) -> None:
        """Write the limits that differ from the group's."""
        old, self.limits = self.limits, limits
        memory, pids, cpu, v2 = (
            self.dirs.get("memory"),
            self.dirs.get("pids"),
            self.dirs.get("cpu"),
            self.v2,
        )
        if memory is not None and limits.memory_bytes != old.memory_bytes:
            value = str(limits.memory_bytes or ("max" if memory == v2 else "-1"))
            if memory == v2:
                self.files.write(memory / "memory.max", value)
                self.files.write(memory / "memory.swap.max", "0" if limits.memory_bytes else "max")
            else:  # v1: the memory+swap limit may never be under the memory limit
                order = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
                raised = old.memory_bytes and (limits.memory_bytes or 0) > old.memory_bytes
                if raised or (old.memory_bytes and not limits.memory_bytes):
                    order.reverse()  # memory+swap first
                for name in order:
                    self.files.write(memory / name, value)
        if pids is not None and limits.pids != old.pids:
            self.files.write(pids / "pids.max", str(limits.pids or "max"))
        if cpu is not None and limits.cpu != old.cpu:
            quota = round(limits.cpu * CPU_PERIOD_US) if limits.cpu else None
            quota = max(1000, quota) if quota is not None else None
            if cpu == v2:
                self.files.write(cpu / "cpu.max", f"{quota or 'max'} {CPU_PERIOD_US}")
            else:
                self.files.write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                self.files.write(cpu / "cpu.cfs_quota_us", str(quota or -1))

    def recycle(self) -> bool:
        """Make this empty v1 group ready for another attempt, its usage counted from zero.
        False where it cannot be done (v2, still populated, more than RECYCLE_CHARGED_MAX
        still charged to it): remove it instead. What the last attempt left charged (file
        cache, some kernel memory: a few kB after most tasks) stays, and is in the next
        one's peak; dropping it (`memory.force_empty`) costs more than a new group."""
        if self.v2 is not None or self.populated():
            return False
        freezer = self.dirs.get("freezer")
        if self.thaw and freezer is not None:
            if not self.files.write(freezer / "freezer.state", "THAWED"):
                return False
            self.thaw = False
        memory, cpuacct = self.dirs.get("memory"), self.dirs.get("cpuacct")
        if memory is not None:
            charged = _read_int(memory / "memory.usage_in_bytes", self.files.read)
            if charged is None or charged > RECYCLE_CHARGED_MAX:
                return False
            if not self.files.write(memory / "memory.max_usage_in_bytes", "0"):
                return False
            self.oom_base = _keyed(memory / "memory.oom_control", self.files.read).get(
                "oom_kill", 0
            )
        if "blkio" in self.dirs:  # (blkio.reset_stats leaves the throttle counts as they are)
            self.io_base = self._blkio_bytes()
        return cpuacct is None or self.files.write(cpuacct / "cpuacct.usage", "0")

    @property
    def v2(self) -> Path | None:
        return self.dirs.get("v2")

    @property
    def frozen_by(self) -> Path | None:
        """The v1 freezer group, where v2 cannot kill."""
        return self.dirs.get("freezer") if self.v2 is None else None

    @functools.cached_property
    def tasks_files(self) -> tuple[str, ...]:
        """What the spawner's thread writes itself into for a child's birth: the `tasks`
        file of each v1 directory (v2 has none: its child is cloned into the group)."""
        return tuple(str(d / "tasks") for d in self.paths if d != self.v2)

    @functools.cached_property
    def paths(self) -> list[Path]:
        return list(dict.fromkeys(self.dirs.values()))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for directory in self.paths:
            found.update(int(p) for p in words(directory / "cgroup.procs") if p.isdigit())
        return found

    def populated(self) -> bool:
        if self.v2 is not None:
            events = _keyed(self.v2 / "cgroup.events", self.files.read)
            if "populated" in events:
                return events["populated"] == 1
        # v1: one hierarchy tells (the first process joined them all, and its children
        # inherit them; only root can leave one, see the README's known limits)
        one = self.dirs.get("freezer") or self.paths[0]
        # (opened afresh: a v1 cgroup.procs kept open answers from a list made earlier)
        return any(p.isdigit() for p in words(one / "cgroup.procs"))

    def kill(self) -> None:
        """SIGKILL every process in the group, including those forked meanwhile."""
        if self.v2 is not None and self.files.write(self.v2 / "cgroup.kill", "1"):
            return
        freezer = self.frozen_by
        if freezer is not None and self.files.write(freezer / "freezer.state", "FROZEN"):
            deadline = time.monotonic() + KILL_WAIT_S
            while time.monotonic() < deadline:  # frozen: nothing in it can fork any more
                if (freezer / "freezer.state").read_text().strip() == "FROZEN":
                    break
                time.sleep(0.001)
            _kill_all(self.pids())
            self.thaw = not self.files.write(freezer / "freezer.state", "THAWED")
            return
        for _ in range(100):  # no freezer: kill until nothing is left (a fork may race)
            pids = self.pids()
            if not pids:
                return
            _kill_all(pids)
            time.sleep(0.005)

    def usage(self) -> GroupUsage:
        cpu_s = peak = read = written = None
        oom = 0
        memory, cpuacct = self.dirs.get("memory"), self.dirs.get("cpuacct")
        if self.v2 is not None:
            stat = _keyed(self.v2 / "cpu.stat", self.files.read)
            if "usage_usec" in stat:
                cpu_s = stat["usage_usec"] / 1e6
        if cpu_s is None and cpuacct is not None:
            ns = _read_int(cpuacct / "cpuacct.usage", self.files.read)
            cpu_s = ns / 1e9 if ns is not None else None
        if memory is not None and memory == self.v2:
            peak = _read_int(memory / "memory.peak", self.files.read)
            oom = _keyed(memory / "memory.events", self.files.read).get("oom_kill", 0)
        elif memory is not None:
            peak = _read_int(memory / "memory.max_usage_in_bytes", self.files.read)
            oom = (
                _keyed(memory / "memory.oom_control", self.files.read).get("oom_kill", 0)
                - self.oom_base
            )
        io, blkio = self.dirs.get("io"), self.dirs.get("blkio")
        if io is not None:
            read = written = 0
            for line in _lines(io / "io.stat", self.files.read):
                values = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
                read += int(values.get("rbytes", 0))
                written += int(values.get("wbytes", 0))
        elif blkio is not None:
            read, written = self._blkio_bytes()
            read, written = read - self.io_base[0], written - self.io_base[1]
        return GroupUsage(cpu_s, peak, read, written, oom)

    def _blkio_bytes(self) -> tuple[int, int]:
        """(read, written) as v1 blkio counts them: "MAJ:MIN Read N" / "MAJ:MIN Write N"."""
        read = written = 0
        stats = self.dirs["blkio"] / "blkio.throttle.io_service_bytes_recursive"
        for line in _lines(stats, self.files.read):
            fields = line.split()
            if len(fields) == 3 and fields[2].isdigit():
                if fields[1] == "Read":
                    read += int(fields[2])
                elif fields[1] == "Write":
                    written += int(fields[2])
        return read, written

    def remove(self) -> list[Path]:
        """Remove the directories of an empty group, at once (an attempt's group has no
        children); those still busy are returned (see `rmdirs`)."""
        self.files.close()
        return rmdirs(self.paths)


# a throttle rule no device reaches (bytes a second): see count_io
NO_THROTTLE = 1 << 62


def disks(block: Path = Path("/sys/block")) -> list[str]:
    """MAJ:MIN of this machine's disks (loop, ram and zram devices left out)."""
    found = []
    for device in sorted(block.glob("*")):
        if device.name.startswith(("loop", "ram", "zram")):
            continue
        with contextlib.suppress(OSError):
            found.append((device / "dev").read_text().strip())
    return found


def count_io(blkio: Path, devices: Iterable[str]) -> None:
    """Make a v1 group count its I/O. Current kernels count a group's bytes on a device in
    blkio.throttle.io_service_bytes only while a throttle rule names that device (with none,
    8 MiB written read 'Total 0' here): so a rule no disk can reach, for each disk, once per
    group (v1 groups serve attempt after attempt)."""
    for device in devices:
        for rule in ("blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device"):
            write(blkio / rule, f"{device} {NO_THROTTLE}")


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


def _lines(path: Path, read: Callable[[Path], str] | None = None) -> list[str]:
    try:
        return (read or _read)(path).splitlines()
    except OSError:
        return []


def _kill_all(pids: Iterable[int]) -> None:
    for pid in set(pids) - {os.getpid()}:  # (a v1 group lists us while a thread of ours joins)
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
    group.files.close()
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
