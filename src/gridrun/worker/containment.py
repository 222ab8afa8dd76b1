"""Containment: everything an attempt starts stays with the attempt, and ends with it.

Two modes, chosen at start and announced (log, `gridrun workers`, the dashboard):

- **cgroup** (root, or a delegated subtree): each attempt is a control group of its own,
  under `gridrun.<worker id>.<data dir hash>` in the worker's own group (or `--cgroup-root`),
  in every hierarchy that is useful (see gridrun.worker.cgroups). The attempt's first process
  is in its group before it execs the task, so not one instruction of the task runs outside
  it, and everything it forks, `setsid` or not, is inside (`CgroupBox.placement`, carried out
  by the worker's spawner, gridrun.worker.spawner). Where the groups are v1 (a hybrid host,
  whose v2 hierarchy has no controllers, uses v1 alone), the spawner's one thread moves into
  them for the moment of the fork and back: a v1 group takes a single thread, cheaply, and
  the child is born in the thread's groups. A v1 group then serves attempt after attempt,
  emptied and its counters zeroed in between (`Group.recycle`; making and removing a memory
  group costs more than a `true` task). Where the groups are v2, which moves whole processes
  only, the child is cloned into its new group (clone3 CLONE_INTO_CGROUP), or where the
  kernel refuses that, writes itself in before exec (a move, which waits out an RCU grace
  period: see gridrun.worker.spawner). Asks become limits
  (`memory_mb` -> memory limit, `cpu` -> CPU quota, a process cap), and usage is read from
  the group when the attempt ends.
- **subreaper** (no cgroup can be made): the worker is a child subreaper, so processes that
  escape with `setsid` are re-parented to it rather than to init, and are found by the attempt
  tag every task's environment carries (GRIDRUN_TASK_ID/GRIDRUN_ATTEMPT). No limits; its
  CPU time from wait4 (the main process and the children it waited for).

An attempt ends when its main process exits, or it is cancelled or times out (after the kill
grace): whatever is left of it is killed then, as systemd does for a service's control group
and Nomad for a task's. A task that wants a process to outlive it must run it elsewhere.

A worker that dies (SIGKILL, OOM, power) takes its attempts with it: a small guardian process
holds a pipe from the worker and, when the pipe closes because the worker is gone, kills every
group under the worker's subtree. A worker that starts kills what a previous process left.
So a task retried elsewhere after its worker died never runs twice at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from gridrun.model import AttemptRef
from gridrun.worker import cgroups
from gridrun.worker.cgroups import Group, GroupLimits, GroupUsage
from gridrun.worker.hierarchies import WANTED, Hierarchy, discover
from gridrun.worker.proctree import (
    PR_SET_CHILD_SUBREAPER,
    prctl,
    reap_orphans,
    tagged_descendants,
)
from gridrun.worker.spawning import Placement

log = logging.getLogger("gridrun.worker")

POOL_IDLE = 16  # v1 groups kept for the next attempts (a new one is made when none is idle)


class Box:
    """What contains one attempt: its first process is started where `placement` says."""

    def placement(self) -> Placement:
        return Placement()

    def kill(self) -> None:
        """Kill everything of the attempt that is still running."""

    def usage(self) -> GroupUsage | None:
        return None

    def populated(self) -> bool:
        """Something of the attempt still runs (as far as the box can tell)."""
        return False

    def memory_limit_mb(self) -> int | None:
        return None

    def close(self) -> None:
        """Release what the box holds (after kill)."""


@dataclass
class CgroupBox(Box):
    group: Group
    release: Callable[[Group], object] = Group.remove  # (keeps a group to recycle, or removes it)

    def placement(self) -> Placement:
        """v1: the spawner forks from inside the groups; v2: it clones the child into its
        group. Either way the child is born there."""
        v2 = self.group.v2
        return Placement(join=self.group.tasks_files, into=str(v2) if v2 is not None else None)

    def kill(self) -> None:
        self.group.kill()

    def usage(self) -> GroupUsage:
        return self.group.usage()

    def populated(self) -> bool:
        return self.group.populated()

    def memory_limit_mb(self) -> int | None:
        memory = self.group.limits.memory_bytes
        return memory // (1024 * 1024) if memory else None

    def close(self) -> None:
        self.release(self.group)


@dataclass
class ReaperBox(Box):
    ref: AttemptRef

    def populated(self) -> bool:
        return bool(tagged_descendants(os.getpid(), self.ref))

    def kill(self) -> None:
        for pid in tagged_descendants(os.getpid(), self.ref):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)  # orphans among them are reaped by reap_orphans


class Containment:
    """How this worker contains attempts (see the module docstring)."""

    mode = "none"

    def describe(self) -> str:
        return self.mode

    def box(self, ref: AttemptRef, limits: GroupLimits) -> Box:
        return Box()

    def enforced(self) -> frozenset[str]:
        """Which of a task's asks ("memory", "cpu") this containment can make limits of."""
        return frozenset()

    def unenforced(self, enforce_asks: bool) -> list[str]:
        """The asks a worker that makes limits of them (`enforce_asks`) cannot: it refuses
        tasks that ask them (Slots), and says so (its Hello, its log)."""
        return sorted({"memory", "cpu"} - self.enforced()) if enforce_asks else []

    def home(self) -> list[Path]:
        """The `tasks` files of the worker's own v1 groups, where the spawner goes back to
        after each fork from inside an attempt's groups."""
        return []

    def start(self) -> None:
        """Take over from a previous worker process and guard against this one dying."""

    def attempt_ended(self, running: Iterable[int]) -> None:
        """An attempt's box is closed; `running` are the main processes of those still
        running (their executions reap them), read only by a containment that needs them."""

    def close(self) -> None:
        """The worker is stopping cleanly."""


class Subreaper(Containment):
    mode = "subreaper"

    def __init__(self) -> None:
        self.ok = prctl(PR_SET_CHILD_SUBREAPER, 1)

    def describe(self) -> str:
        return "subreaper" if self.ok else "none (no prctl: escaped processes are not caught)"

    def box(self, ref: AttemptRef, limits: GroupLimits) -> Box:
        return ReaperBox(ref)

    def start(self) -> None:
        reap_orphans()  # nothing runs yet

    def attempt_ended(self, running: Iterable[int]) -> None:
        reap_orphans(set(running))  # what escaped an attempt and has exited since


class Cgroups(Containment):
    mode = "cgroup"

    def __init__(self, name: str, hierarchies: list[Hierarchy], root: str | None) -> None:
        self.base: dict[str, Path] = {}  # "v2" or a v1 controller -> this worker's subtree
        self.v2: Path | None = None
        self._homes: list[Path] = []  # the worker's own group in each v1 hierarchy used
        v2 = next((h for h in hierarchies if h.version == 2), None)
        if v2 is not None and not self._keeps_v2(v2, hierarchies):
            v2 = None
        self._v2_controllers: set[str] = set()  # enabled for the attempts' groups
        if v2 is not None:
            parent = v2.mount / root.lstrip("/") if root else v2.own
            base = parent / name
            if _mkdir(base):
                self.v2 = base
                self._v2_controllers = _enable(parent, base)
                for controller in self._v2_controllers:
                    self.base[controller] = base
                if "cpu" in self._v2_controllers:
                    self.base["cpuacct"] = base  # cpu.stat has the usage
        # with v2, cgroup.kill and cpu.stat do what the v1 freezer and cpuacct would
        needless = {"freezer", "cpuacct"} if self.v2 is not None else set()
        for h in (h for h in hierarchies if h.version == 1):
            wanted = h.controllers - set(self.base) - needless
            if not wanted:
                continue
            parent = h.mount / root.lstrip("/") if root else h.own
            base = parent / name
            if _mkdir(base):
                self._homes.append(h.own)
                for controller in wanted:
                    self.base[controller] = base
        self.freezer = self.base.get("freezer")  # (only where there is no v2: see needless)
        self._guardian: subprocess.Popen[bytes] | None = None
        self._busy: list[Path] = []  # attempts' directories to remove once they drain
        self._idle: list[Group] = []  # v1 groups an attempt used, ready for the next one
        self._numbers = itertools.count(1)
        self._disks = cgroups.disks() if "blkio" in self.base else []
        # the directories made above were a probe: `start` makes them again, under its
        # guardian, so a worker that fails before it starts leaves none behind
        cgroups.rmdirs(self._bases())

    @staticmethod
    def _keeps_v2(v2: Hierarchy, hierarchies: list[Hierarchy]) -> bool:
        """A hybrid's bare v2 (no controllers) is left out where a v1 freezer can kill:
        groups that are all v1 let the spawner's thread join (see CgroupBox.placement)."""
        bare = not v2.controllers & set(WANTED)
        v1_freezer = any("freezer" in h.controllers for h in hierarchies if h.version == 1)
        return not (bare and v1_freezer)

    def _make_bases(self) -> None:
        for base in self._bases():
            base.mkdir(exist_ok=True)
        memory = self.base.get("memory")
        if memory is not None and memory != self.v2:
            cgroups.write(memory / "memory.use_hierarchy", "1")
        if self.v2 is not None:
            for controller in sorted(self._v2_controllers):
                cgroups.write(self.v2 / "cgroup.subtree_control", f"+{controller}")

    @property
    def usable(self) -> bool:
        return self.v2 is not None or "freezer" in self.base or "pids" in self.base

    def describe(self) -> str:
        parts = []
        if self.v2 is not None:
            parts.append("v2")
        v1 = sorted(c for c, base in self.base.items() if base != self.v2)
        if v1:
            parts.append("v1 " + ",".join(v1))
        return f"cgroup ({'; '.join(parts)})"

    def enforced(self) -> frozenset[str]:
        return frozenset({"memory", "cpu"} & set(self.base))

    def _bases(self) -> list[Path]:
        return list(dict.fromkeys([*([self.v2] if self.v2 else []), *self.base.values()]))

    def box(self, ref: AttemptRef, limits: GroupLimits) -> Box:
        self._retry_removals()
        if self.v2 is None:
            group = self._recycled() or self._group(f"pool.{next(self._numbers)}", set())
        else:  # (memory.peak cannot be reset before Linux 6.12: a v2 group serves once)
            group = self._group(f"{ref.task_id}.{ref.attempt}", {"pids", "cpu"} - _asked(limits))
        group.set_limits(limits)
        return CgroupBox(group, self._release)

    def home(self) -> list[Path]:
        return [home / "tasks" for home in self._homes]

    def _recycled(self) -> Group | None:
        """An idle group, if there is one still standing (a dead predecessor's guardian may
        have removed the subtree)."""
        if self._idle and not self._idle[-1].paths[0].is_dir():
            self._drop_idle()
        return self._idle.pop() if self._idle else None

    def _group(self, leaf: str, unneeded: set[str]) -> Group:
        """A new group named `leaf` in each hierarchy, but those only `unneeded` controllers
        would need: each is a mkdir, a join and an rmdir."""
        dirs: dict[str, Path] = {}
        owners = [("v2", self.v2), *self.base.items()]
        for base in self._bases():
            if all(key in unneeded for key, owner in owners if owner == base):
                continue
            directory = base / leaf
            try:
                directory.mkdir()
            except FileExistsError:  # a leftover of an earlier try of this attempt
                cgroups.remove_tree(directory)
                directory.mkdir()
            except FileNotFoundError:  # a dead predecessor's guardian removed the base
                self._make_bases()
                directory.mkdir()
            for key, owner in owners:
                if owner == base:
                    dirs[key] = directory
        if "blkio" in dirs:
            cgroups.count_io(dirs["blkio"], self._disks)
        return Group(dirs=dirs)

    def _release(self, group: Group) -> None:
        """An attempt is over: its v1 group waits for the next one, if it can be made as good
        as new (see Group.recycle); else it is removed, now or once it drains."""
        if self.v2 is None and len(self._idle) < POOL_IDLE and group.recycle():
            self._idle.append(group)
        else:
            self._busy.extend(group.remove())

    def _retry_removals(self) -> None:
        self._busy[:] = cgroups.rmdirs(list(self._busy))

    def start(self) -> None:
        self._make_bases()
        leftovers = [c for base in self._bases() for c in cgroups.children(base)]
        if leftovers:
            log.warning(
                "killing %d attempt group(s) a previous worker process left running",
                len({c.name for c in leftovers}),
            )
        cgroups.kill_subtree(self._bases(), self.v2, self.freezer)
        self._guardian = start_guardian(self._bases(), self.v2, self.freezer)

    def _drop_idle(self) -> None:
        for group in self._idle:
            group.files.close()
        self._idle.clear()

    def close(self) -> None:
        self._drop_idle()
        guardian, self._guardian = self._guardian, None
        if guardian is not None:
            assert guardian.stdin is not None
            guardian.stdin.close()  # the guardian kills what is left, then exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                guardian.wait(timeout=10)


def subtree_name(worker_id: str, data_dir: Path) -> str:
    """This worker's subtree in each hierarchy: its id, and its data dir's (two grids on one
    host may both have a `w1`; one data dir is one worker, across its restarts)."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:10]
    return f"gridrun.{worker_id}.{digest}"


def choose(
    name: str, wanted: str, root: str | None, hierarchies: list[Hierarchy] | None = None
) -> Containment:
    """The containment this worker can have: `auto` is cgroups where they can be made, else a
    subreaper; `cgroup` insists; `subreaper` and `none` as named."""
    if wanted in ("auto", "cgroup"):
        try:
            found = discover() if hierarchies is None else hierarchies
        except OSError:
            found = []
        groups = Cgroups(name, found, root)
        if groups.usable:
            return groups
        if wanted == "cgroup":
            raise PermissionError(
                "cannot create cgroups here (run the worker as root, or give it a delegated"
                " subtree with --cgroup-root); --containment subreaper works without"
            )
    if wanted == "none":
        return Containment()
    return Subreaper()


def limits_for(memory_mb: int, cpu: float, pids: int | None, enforce: bool) -> GroupLimits:
    if not enforce:
        return GroupLimits(pids=pids)
    return GroupLimits(
        memory_bytes=memory_mb * 1024 * 1024 if memory_mb else None,
        cpu=cpu or None,
        pids=pids,
    )


def _asked(limits: GroupLimits) -> set[str]:
    """The controllers these limits need."""
    return {name for name, limit in (("pids", limits.pids), ("cpu", limits.cpu)) if limit}


def _enable(parent: Path, base: Path) -> set[str]:
    """Enable what v2 controllers we can for the attempts' groups; those that took."""
    available = set(cgroups.words(parent / "cgroup.controllers")) & {"memory", "pids", "cpu", "io"}
    for controller in sorted(available):
        cgroups.write(parent / "cgroup.subtree_control", f"+{controller}")
        cgroups.write(base / "cgroup.subtree_control", f"+{controller}")
    return set(cgroups.words(base / "cgroup.subtree_control")) & available


def _mkdir(path: Path) -> bool:
    try:
        path.mkdir(exist_ok=True)
        (path / "cgroup.procs").stat()
    except OSError:
        return False
    return True


def start_guardian(
    bases: list[Path], v2: Path | None, freezer: Path | None
) -> subprocess.Popen[bytes]:
    """The process that kills this worker's attempts if the worker dies (see the docstring):
    started outside every attempt group, it waits for the end of a pipe only the worker holds."""
    spec = json.dumps(
        {
            "bases": [str(b) for b in bases],
            "v2": str(v2) if v2 else None,
            "freezer": str(freezer) if freezer else None,
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "gridrun.worker.guardian", spec],
        stdin=subprocess.PIPE,
        start_new_session=True,  # a Ctrl-C meant for the worker does not stop it
    )
