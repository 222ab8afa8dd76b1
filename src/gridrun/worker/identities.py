"""An identity of its own for every running task on a root worker.

Tasks that share a uid can read each other's /proc/PID/environ (secrets included), signal and
ptrace each other. So a root worker given no --run-as runs each attempt as a uid of its own,
taken from a range no account uses (systemd's DynamicUser and Slurm's per-job users are the
models), with the same number as its only group, a private HOME and TMPDIR (0700, emptied when
the attempt ends), and no other groups. Where the worker may make mount namespaces, that
directory is also the task's /tmp: what one task leaves in /tmp no other task sees.

The range: `--task-ids FIRST-LAST`, by default 2000000000-2000065535 (above the ranges of
accounts, systemd's dynamic users and the usual container and subordinate ranges). The worker
refuses to start if an account, a group or an /etc/subuid or /etc/subgid range uses any of it.
A uid is held by an flock on /run/gridrun/task-ids/UID for as long as its attempt runs, so
several workers on one host share the range without ever handing out one uid twice, and a
worker that dies lets go of its uids with its file descriptors (its guardian kills what they
ran). An attempt's uid is given back only after its box (cgroup) has ended everything in it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import grp
import itertools
import os
import pwd
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gridrun.errors import ConfigError

DEFAULT_RANGE = "2000000000-2000065535"
STATE_DIR = Path("/run/gridrun")


def parse_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    if not sep or not first.isdigit() or not last.isdigit():
        raise ConfigError(f"--task-ids {text!r}: give FIRST-LAST, e.g. {DEFAULT_RANGE}")
    low, high = int(first), int(last)
    if not 1000 <= low <= high < 2**31 - 1:
        raise ConfigError(f"--task-ids {text!r}: a range within 1000 .. {2**31 - 2}")
    return low, high


def _subordinate_ranges(path: Path) -> list[tuple[int, int]]:
    """(first, last) of each range in /etc/subuid or /etc/subgid (user:first:count)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    ranges = []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            start = int(parts[1])
            ranges.append((start, start + int(parts[2]) - 1))
    return ranges


@dataclass
class Identity:
    """The uid (and gid) an attempt runs as; its private directory, HOME and TMPDIR (and its
    /tmp, seen through `namespace`: a mount namespace of its own, an open fd, where the
    worker may make them)."""

    uid: int
    home: Path
    lock: int  # the fd holding the uid's flock
    namespace: int | None = None


@dataclass
class _Place:
    """A private directory and the namespace that shows it at /tmp: made once (~0.3 ms),
    emptied and handed to another uid for each attempt."""

    home: Path
    namespace: int | None


IDLE_MAX = 64  # places a worker keeps ready between attempts (each: a dir and a namespace)


class TaskIdentities:
    def __init__(self, first: int, last: int, state_dir: Path = STATE_DIR) -> None:
        self.first, self.last = first, last
        self._locks = state_dir / "task-ids"
        self._homes = state_dir / "task-homes"
        self._held: set[int] = set()  # uids running attempts of this worker have
        # A uid is not reused at once: the next attempt gets the next uid of the range (what
        # one left in /dev/shm or a shared directory stays the old uid's); only its place is
        self._next = first
        self._idle: list[_Place] = []
        self._places = itertools.count(1)
        self.private_tmp = False  # its home is also its /tmp (see check_startup)

    def check_startup(self) -> None:
        """Refuse a range that an account, a group or a subordinate range uses; make the
        directories (root's, reachable but not listable by the tasks)."""
        inside = range(self.first, self.last + 1)
        users = [p.pw_name for p in pwd.getpwall() if p.pw_uid in inside]
        groups = [g.gr_name for g in grp.getgrall() if g.gr_gid in inside]
        taken = [f"user {u}" for u in users] + [f"group {g}" for g in groups]
        for path in (Path("/etc/subuid"), Path("/etc/subgid")):
            for low, high in _subordinate_ranges(path):
                if low <= self.last and high >= self.first:
                    taken.append(f"{path} range {low}-{high}")
        if taken:
            raise ConfigError(
                f"--task-ids {self.first}-{self.last} collides with {', '.join(taken[:5])}:"
                " give another range (tasks must not share an identity with anyone)"
            )
        try:
            self._locks.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._homes.mkdir(mode=0o711, parents=True, exist_ok=True)
            for made, mode in ((self._locks, 0o700), (self._homes, 0o711)):
                info = made.lstat()
                if made.is_symlink() or info.st_uid != 0:
                    raise ConfigError(f"{made} must be a directory of root's, not a link")
                made.chmod(mode)
        except OSError as exc:
            raise ConfigError(f"cannot make {self._locks.parent}: {exc}") from None
        self.private_tmp = private_tmp_works()

    def take(self) -> Identity:
        """A uid no other running attempt (of any worker on this host) has, with a private
        directory it owns, empty; OSError if the whole range is in use."""
        size = self.last - self.first + 1
        for step in range(size):
            uid = self.first + (self._next - self.first + step) % size
            if uid in self._held:
                continue
            fd = os.open(self._locks / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._held.add(uid)
            self._next = uid + 1 if uid < self.last else self.first
            try:
                place = self._idle.pop() if self._idle else self._new_place()
                os.chown(place.home, uid, uid)
                os.chmod(place.home, 0o700)
            except OSError:
                self._held.discard(uid)
                os.close(fd)
                raise
            return Identity(uid, place.home, fd, place.namespace)
        raise OSError(f"all {size} task ids ({self.first}-{self.last}) are in use")

    def _new_place(self) -> _Place:
        home = self._homes / f"{os.getpid()}.{next(self._places)}"
        shutil.rmtree(home, ignore_errors=True)  # (a dead worker's of the same pid)
        home.mkdir(mode=0o700)
        return _Place(home, tmp_namespace(home) if self.private_tmp else None)

    def give_back(self, identity: Identity) -> None:
        """The attempt has ended and its box holds nothing: its uid is free, and its place,
        emptied, waits for the next attempt (or goes, beyond IDLE_MAX)."""
        self._held.discard(identity.uid)
        os.close(identity.lock)  # (closing it lets go of the lock)
        place = _Place(identity.home, identity.namespace)
        if len(self._idle) < IDLE_MAX and _emptied(place.home):
            os.chown(place.home, 0, 0)  # nobody's between attempts
            self._idle.append(place)
        else:
            _remove(place)

    def close(self) -> None:
        while self._idle:
            _remove(self._idle.pop())


def _remove(place: _Place) -> None:
    shutil.rmtree(place.home, ignore_errors=True)
    if place.namespace is not None:
        os.close(place.namespace)


def _emptied(home: Path) -> bool:
    """Remove what is in `home` (not `home` itself: a namespace has it bound on /tmp)."""
    try:
        for entry in os.scandir(home):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    except OSError:
        return False
    return True


CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SLAVE = 1 << 19


def _libc_call(name: str, *args: object) -> None:
    result = getattr(ctypes.CDLL(None, use_errno=True), name)(*args)
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


def private_tmp_works() -> bool:
    """Whether this process may give a task a /tmp of its own (a mount namespace: root with
    CAP_SYS_ADMIN, not in a container that forbids it). Tried once, in a child."""
    pid = os.fork()
    if pid == 0:  # (a fresh child of a process that has not started its threads yet)
        try:
            _libc_call("unshare", CLONE_NEWNS)
            _libc_call("mount", b"none", b"/", None, MS_REC | MS_SLAVE, None)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def tmp_namespace(home: Path) -> int:
    """A mount namespace in which `home` is bound on /tmp (its mounts slaves of the host's,
    so nothing done in it reaches the host): an fd that keeps it, for the spawner to enter.
    Made by the calling thread, which then goes back to where it was."""
    with _returning():
        _libc_call("unshare", CLONE_NEWNS)
        _libc_call("mount", b"none", b"/", None, MS_REC | MS_SLAVE, None)
        _libc_call("mount", os.fsencode(home), b"/tmp", None, MS_BIND, None)
        return os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)


@contextlib.contextmanager
def _returning() -> Iterator[None]:
    """The calling thread back in this process's mount namespace and directory afterwards
    (setns resets the directory to the namespace's root)."""
    own_ns = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    own_cwd = os.open(".", os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY)
    try:
        yield
    finally:
        try:
            _libc_call("setns", own_ns, CLONE_NEWNS)
            os.fchdir(own_cwd)
        finally:
            os.close(own_ns)
            os.close(own_cwd)
