"""Which cgroup hierarchies this host has, and this process's group in each.

Hosts differ. A modern one has one cgroup v2 hierarchy with the controllers enabled; an older
or hybrid one has v1 hierarchies (`memory`, `pids`, `cpu`, `cpuacct`, `freezer`, `blkio`, each
mounted alone or together), maybe beside a v2 hierarchy with no controllers (`unified`). The
hierarchies are found from /proc/self/mountinfo and this process's place in each from
/proc/self/cgroup, never from a fixed path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# blkio (v1) gives what an attempt read and wrote, as v2's io does: since v1 groups serve
# attempt after attempt (see cgroups.Group.recycle), it costs a join per attempt, not a
# mkdir/rmdir
WANTED = ("memory", "pids", "cpu", "cpuacct", "freezer", "io", "blkio")


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
            enabled = _controllers(own)
            found.append(Hierarchy(2, point, frozenset(enabled) & frozenset(WANTED), own))
        elif controllers not in seen:
            path = own_v1.get(next(iter(controllers)))
            own = _inside(point, root, path) if path is not None else None
            if own is not None:
                seen.add(controllers)
                found.append(Hierarchy(1, point, controllers, own))
    return found


def _controllers(group: Path) -> list[str]:
    """The v2 controllers a group's children may have."""
    try:
        return (group / "cgroup.controllers").read_text().split()
    except OSError:
        return []
