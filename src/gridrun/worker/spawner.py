"""The worker's spawner: a small single-threaded process that starts every attempt's process.

A worker is a large process with gRPC threads: it cannot fork safely (gRPC's fork handlers),
and exec wrappers (`setpriv`, `prlimit`, a shell for the cgroup) made a task three execs. This
process (`python -I -S spawner.py FD PPID HOME...`, the standard library only, ~13 MB) has one
thread, so it may change its own ids, namespace and groups for a moment. For each launch
request on its socket it

- joins the attempt's v1 groups with its one thread, so the child is born inside them, then
  goes back (HOME). A write of `0` to a v1 `tasks` file moves just the writer, without the
  global lock a process's move takes (that lock waits out an RCU grace period, ~10 ms here,
  unless another move happened moments before), and a child born in its group does not pay
  the ~11 ms a moved process loses over its first sleep on this kernel;
- enters the attempt's mount namespace (its own /tmp) and its directory, and goes back;
- starts the program with posix_spawn (vfork and exec, what `xargs` costs): a session of its
  own, stdin /dev/null (or the file holding the task's stdin), the output pipes, and the
  attempt's uid and gid by POSIX_SPAWN_RESETIDS (see Server.spawn): one exec, nothing run
  in between;
- where that cannot do it (rlimits; a v2 group), forks a child that does those steps in
  Python, then execs. Into a v2 group the child is cloned (clone3 with CLONE_INTO_CGROUP,
  Linux 5.7), so it too is born there and pays for no move; where clone3 is refused (an
  older kernel, a seccomp filter) it is forked and writes itself into the group's
  `cgroup.procs` before exec (that move waits out the grace period above);
- hands back the child's pid, its output pipes and a pidfd (SCM_RIGHTS), or why it could not
  start (errno, and what failed: the same words as an exec from the worker would give);
- reaps it (it is the parent, and a subreaper: what a task leaves behind is re-parented here,
  not to init) and sends its wait status and CPU time.

It exits when the worker's end of the socket closes, and when the worker dies
(PR_SET_PDEATHSIG), killing the process groups of the tasks it started that still run. The
worker is a subreaper too: if this process dies, the attempts it started become the
worker's children, which reaps them itself (gridrun.worker.spawning).

Messages are JSON, one a datagram (SOCK_SEQPACKET):
  -> {"id", "argv", "exe", "env", "cwd", "ids": [uid, gid] | null, "rlimits": [[n, value]],
      "join": [v1 tasks files], "into": v2 group directory | null} (+ its namespace fd, if any)
  <- {"id", "pid", "moved"} (+ stdout, stderr, pidfd) | {"id", "errno", "what", "detail"}
  <- {"exit": id, "status": wait status, "cpu": seconds}
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import json
import os
import resource
import selectors
import signal
import socket
import sys
from errno import ENODEV, ENOENT
from typing import Any

SCRIPT_FD = 3  # a task's shipped script: this descriptor of its process (see policy)
CLONE_NEWNS = 0x00020000
CLONE_INTO_CGROUP = 0x200000000
SYS_CLONE3 = 435  # (one number on every architecture: syscalls since Linux 5.1 share theirs)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
MAX_FDS = 4
MAX_MESSAGE = 16 * 1024 * 1024  # the socket buffers, and so the largest request
EXIT_CANNOT_START = 127
TASKS_FILES_KEPT = 256

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, call: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{call}: {os.strerror(err)}")


def _write(path: str, value: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value)
    finally:
        os.close(fd)


class _CloneArgs(ctypes.Structure):
    """struct clone_args, as far as CLONE_INTO_CGROUP (its size says which fields we give)."""

    _fields_ = [(name, ctypes.c_uint64) for name in [
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup"]]  # fmt: skip


def _clone_into(group: int) -> int:
    """fork(), the child born in the v2 group whose directory `group` is open on: 0 in the
    child, its pid in the parent. OSError where clone3 or the flag is refused."""
    args = _CloneArgs(flags=CLONE_INTO_CGROUP, exit_signal=signal.SIGCHLD, cgroup=group)
    size = ctypes.c_long(ctypes.sizeof(args))
    pid = int(_libc.syscall(ctypes.c_long(SYS_CLONE3), ctypes.byref(args), size))
    _check(min(pid, 0), "clone3")
    return pid


class _Failed(Exception):
    """A step before exec failed: (errno, what, detail) for the worker's report."""


def _child(request: dict[str, Any], out: int, err: int, report: int, move_into: str | None) -> None:
    """In the forked child (signals blocked): become the task (never returns). `move_into`:
    the v2 group it was not born in, to write itself into."""
    what, detail = "exec", ""
    try:
        for number in (signal.SIGINT, signal.SIGCHLD, signal.SIGTERM):
            signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.setsid()
        if move_into is not None:
            what, detail = "cgroup", move_into
            _write(os.path.join(move_into, "cgroup.procs"), b"0")
        # its standard streams before its limits: under a low open-file limit the spawner's
        # own descriptors (closed at exec) may hold every number below it
        what, detail = "exec", ""
        stdin = request["stdin_fd"]
        os.dup2(stdin if stdin is not None else os.open(os.devnull, os.O_RDONLY), 0)
        if request["script_fd"] is not None:
            os.dup2(request["script_fd"], SCRIPT_FD)  # (what its interpreter reads)
        os.dup2(out, 1)
        os.dup2(err, 2)
        cwd = request["cwd"]
        if cwd is not None:
            what, detail = "chdir", cwd
            os.chdir(cwd)
        what, detail = "limits", ""
        for number, value in request["rlimits"]:
            resource.setrlimit(number, (value, value))
        ids = request["ids"]
        if ids is not None:
            what = "identity"
            uid, gid = ids
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        what, detail = "exec", ""
        argv, env = request["argv"], request["env"]
        exe = request["exe"]
        if exe is not None or "/" in argv[0]:
            os.execve(exe or argv[0], argv, env)
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        message = {"errno": exc.errno or 0, "what": what, "detail": detail or exc.strerror}
    except (ValueError, TypeError) as exc:  # a NUL byte in an argument or a variable
        message = {"errno": 0, "what": what, "detail": str(exc)}
    except BaseException as exc:
        message = {"errno": 0, "what": what, "detail": repr(exc)}
    try:
        os.write(report, json.dumps(message).encode())
    finally:
        os._exit(EXIT_CANNOT_START)


class Server:
    def __init__(self, sock: socket.socket, home: list[str]) -> None:
        self.sock = sock
        self.home = [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in home]
        self.children: dict[int, int] = {}  # pid -> request id
        self.tasks: dict[str, int] = {}  # v1 `tasks` files of attempts' groups, open
        self.own_ns = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        self.own_cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.clone3 = True  # until the kernel says otherwise (see clone)

    def serve(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self.orphaned)  # (our death signal: the worker died)
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ, "request")
        selector.register(wake_r, selectors.EVENT_READ, "child")
        while True:
            for key, _ in selector.select():
                if key.data == "child":
                    while True:
                        try:
                            if not os.read(wake_r, 4096):
                                break
                        except BlockingIOError:
                            break
                    self.reap()
                elif not self.request():
                    self.orphaned()

    def orphaned(self, *_: object) -> None:
        """The worker has gone: end what we started that still runs (their cgroups' guardian
        does so too, for what they started), then ourselves."""
        for pid in self.children:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        sys.exit(0)

    def request(self) -> bool:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(
                MAX_MESSAGE,
                socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize),
                socket.MSG_CMSG_CLOEXEC,
            )
        except InterruptedError:
            return True
        if not data:
            return False  # the worker has gone
        fds = array.array("i")
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        # (surrogates: what of the worker's environment is not UTF-8 travels as it was)
        request = json.loads(data.decode("utf-8", "surrogateescape"))
        given = list(fds)  # the namespace (if "ns"), then the stdin file (if "stdin")
        ns = given.pop(0) if request["ns"] else None
        request["stdin_fd"] = given.pop(0) if request["stdin"] else None
        request["script_fd"] = given.pop(0) if request["script"] else None
        try:
            self.launch(request, ns)
        except Exception as exc:  # a bug of ours: that launch fails, with why; we go on
            self.send({"id": request["id"], "errno": 0, "what": "spawner", "detail": repr(exc)})
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def launch(self, request: dict[str, Any], ns: int | None) -> None:
        tasks = request["join"]
        try:
            self.join(tasks)  # v1: the child is born in the attempt's groups
            try:
                self.enter(ns)
                try:
                    if request["rlimits"] or request["into"]:
                        pid, out, err, moved = self.fork(request)
                    else:
                        (pid, out, err), moved = self.spawn(request), False
                finally:
                    if ns is not None:
                        _check(_libc.setns(self.own_ns, CLONE_NEWNS), "setns")
                    if ns is not None or request["cwd"] is not None:
                        os.fchdir(self.own_cwd)  # (setns moves us to the namespace's root)
            finally:
                if tasks:
                    for fd in self.home:
                        os.pwrite(fd, b"0", 0)
        except _Failed as failed:
            errno, what, detail = failed.args
            self.send({"id": request["id"], "errno": errno, "what": what, "detail": detail})
            return
        pidfd = os.pidfd_open(pid)
        self.children[pid] = request["id"]
        try:
            self.send({"id": request["id"], "pid": pid, "moved": moved}, [out, err, pidfd])
        finally:
            for fd in (out, err, pidfd):
                os.close(fd)

    def join(self, tasks: list[str]) -> None:
        """Put this thread (the process's only one) in these v1 groups: a write of 0 to each
        `tasks` file, kept open (a group serves attempt after attempt)."""
        for path in tasks:
            for attempt in (1, 2):
                fd = self.tasks.get(path)
                try:
                    if fd is None:
                        if len(self.tasks) >= TASKS_FILES_KEPT:
                            self.forget_tasks()
                        fd = self.tasks[path] = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                    os.pwrite(fd, b"0", 0)
                    break
                except OSError as exc:
                    if fd is not None:  # a group removed since: open it afresh, once
                        os.close(self.tasks.pop(path))
                    if attempt == 2 or fd is None:
                        raise _Failed(exc.errno or 0, "cgroup", exc.strerror or str(exc)) from None

    def forget_tasks(self) -> None:
        for fd in self.tasks.values():
            os.close(fd)
        self.tasks.clear()

    def enter(self, ns: int | None) -> None:
        """Into the attempt's mount namespace (its own /tmp) for the fork."""
        if ns is not None:
            try:
                _check(_libc.setns(ns, CLONE_NEWNS), "setns")
            except OSError as exc:
                raise _Failed(exc.errno or 0, "namespace", exc.strerror or str(exc)) from None

    def spawn(self, request: dict[str, Any]) -> tuple[int, int, int]:
        """The common case: posix_spawn (vfork and exec, nothing copied; what `xargs` costs).
        Its child drops to the attempt's ids by POSIX_SPAWN_RESETIDS, which sets the effective
        ids to the real ones: ours are made the attempt's for the moment of the call (the
        effective and saved ones stay root's, so nothing of our privilege goes), and exec then
        makes all three the attempt's, with no capabilities. We have no supplementary groups
        (dropped at start), so neither has the child."""
        cwd, ids = request["cwd"], request["ids"]
        if cwd is not None:
            try:
                os.chdir(cwd)  # (as root, as before: the attempt starts there)
            except OSError as exc:
                raise _Failed(exc.errno or 0, "chdir", exc.strerror or str(exc)) from None
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        stdin = request["stdin_fd"]
        actions = [
            (os.POSIX_SPAWN_DUP2, stdin, 0)
            if stdin is not None
            else (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ]
        if request["script_fd"] is not None:
            actions.append((os.POSIX_SPAWN_DUP2, request["script_fd"], SCRIPT_FD))
        try:
            if ids is not None:
                os.setresgid(ids[1], 0, 0)
                os.setresuid(ids[0], 0, 0)
            try:
                pid = self.exec(request, actions, ids is not None)
            finally:
                if ids is not None:
                    os.setresuid(0, 0, 0)
                    os.setresgid(0, 0, 0)
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        return pid, out_r, err_r

    @staticmethod
    def exec(request: dict[str, Any], actions: list[tuple[Any, ...]], resetids: bool) -> int:
        """posix_spawn the program: the checked file, a path, or the first file of that name
        in the task's PATH that can run (as execvpe looks for it)."""
        argv, env, exe = request["argv"], request["env"], request["exe"]
        if exe is not None or "/" in argv[0]:
            candidates = [exe or argv[0]]
        else:
            # (a stat each: a try of posix_spawn on a missing file costs a whole vfork)
            found = [os.path.join(d, argv[0]) for d in os.get_exec_path(env)]
            candidates = [c for c in found if os.path.isfile(c)] or found[:1]
        denied: OSError | None = None
        missing: OSError = FileNotFoundError(ENOENT, os.strerror(ENOENT))
        for candidate in candidates:
            try:
                return os.posix_spawn(
                    candidate, argv, env, file_actions=actions, setsid=True, resetids=resetids
                )
            except (FileNotFoundError, NotADirectoryError) as exc:
                missing = exc
            except PermissionError as exc:
                denied = exc
            except OSError as exc:
                raise _Failed(exc.errno or 0, "exec", exc.strerror or str(exc)) from None
            except (ValueError, TypeError) as exc:  # a NUL byte in an argument or a variable
                raise _Failed(0, "exec", str(exc)) from None
        failed = denied or missing
        raise _Failed(failed.errno or 0, "exec", failed.strerror or str(failed))

    def fork(self, request: dict[str, Any]) -> tuple[int, int, int, bool]:
        """What CPython's spawn cannot do (rlimits, a v2 group) is done by Python code in a
        child forked, or cloned into its v2 group, with every signal blocked (our handlers
        must not run in it: it sets them to the default, then unblocks). The last value:
        it moved itself into its v2 group (clone3 was refused)."""
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            pid, move_into = self.clone(request["into"])
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            for fd in (out_r, out_w, err_r, err_w, report_r, report_w):
                os.close(fd)
            raise
        if pid == 0:
            _child(request, out_w, err_w, report_w, move_into)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        for fd in (out_w, err_w, report_w):
            os.close(fd)
        failure = b""
        while chunk := os.read(report_r, 65536):  # at its exec the pipe closes: empty
            failure += chunk
        os.close(report_r)
        if failure:
            os.close(out_r)
            os.close(err_r)
            os.waitpid(pid, 0)
            reason = json.loads(failure)
            raise _Failed(reason["errno"], reason["what"], reason["detail"])
        return pid, out_r, err_r, move_into is not None

    def clone(self, into: str | None) -> tuple[int, str | None]:
        """(pid, the v2 group the child must still move into): cloned into the group `into`
        where clone3 takes it, else forked (and after one refusal, forked from then on)."""
        if into is not None and self.clone3:
            try:
                group = os.open(into, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    return _clone_into(group), None
                finally:
                    os.close(group)  # (in the child too)
            except OSError as exc:
                if exc.errno in (ENOENT, ENODEV):  # the group is gone: say so
                    raise _Failed(exc.errno, "cgroup", exc.strerror or str(exc)) from None
                self.clone3 = False  # (ENOSYS, E2BIG, EINVAL: an older kernel; EPERM: seccomp)
        try:
            return os.fork(), into
        except OSError as exc:
            raise _Failed(exc.errno or 0, "fork", exc.strerror or str(exc)) from None

    def reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            request = self.children.pop(pid, None)
            if request is not None:  # (else something a task left, re-parented here)
                cpu = usage.ru_utime + usage.ru_stime
                self.send({"exit": request, "status": status, "cpu": cpu})

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode()
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        try:
            self.sock.sendmsg([data], ancillary)
        except (BrokenPipeError, ConnectionResetError):
            sys.exit(0)  # the worker has gone


def main(argv: list[str]) -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # it holds the tasks' environments (their secrets) on the way: like the worker, it may
    # not be read or traced by a task of its user (gridrun.worker.hardening)
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    fd, expected_parent = int(argv[0]), int(argv[1])
    if os.getppid() != expected_parent:
        return  # the worker died before the death signal was set
    # a Ctrl-C is for the worker, which stops us (caught, not ignored: what is ignored stays
    # ignored in what we exec)
    signal.signal(signal.SIGINT, lambda *_: None)
    if os.geteuid() == 0:
        os.setgroups([])  # (what a child of ours would inherit: see Server.spawn)
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)  # (passed to us; never to a task)
    Server(sock, argv[2:]).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
