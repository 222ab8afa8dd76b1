"""What this worker agrees to run, as whom, where and with which limits — whatever the master
says. A refused assignment is never started: it ends `rejected` with the reason.

- executables: an allowlist of globs. A pattern with a slash (`/usr/bin/*`) matches the real
  path of argv[0] (symlinks resolved); a bare name (`python3`) matches only that program as
  found in the directories of the worker's own PATH (never the task's PATH or cwd), whether the
  task names it bare or by that path. The file that was checked is the file that runs: argv[0]
  is resolved once and its real path executed, so swapping a symlink or a PATH entry afterwards
  changes nothing. Empty allows any;
- code-loading variables: a task's env may not set what makes a program load code from
  elsewhere. The dynamic loader's (`LD_*`, `GCONV_PATH`, `GLIBC_TUNABLES`, …) are refused always
  (the run-as and limit wrappers start as root); with an allowlist, so are the shells',
  Python's, Perl's, Ruby's, Node's and Java's, and PATH (see CODE_LOADING_ENV);
- shell: `shell: true` tasks are refused unless allow_shell (a shell runs anything, so the
  allowlist cannot see inside it);
- run-as: a user (and group) for every task, when the worker runs as root, or a uid of its
  own for each attempt (gridrun.worker.identities): the spawner's child drops to it, with no
  other groups, right before exec (gridrun.worker.spawner);
- limits: CPU seconds, address space, open files, processes: rlimits the child sets, as root,
  before it drops its privileges.
- working directory: the task's own `cwd` only under the allowed roots; otherwise the worker's
  directory, or a fresh directory per attempt under the work dir (removed afterwards);
- environment: the worker's own variables filtered by an allowlist of globs, plus the task's.
"""

from __future__ import annotations

import fnmatch
import functools
import grp
import os
import pwd
import re
import resource
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gridrun.errors import ConfigError
from gridrun.worker.identities import Identity
from gridrun.worker.spawner import SCRIPT_FD  # (its interpreter reads the script there)

DEFAULT_ENV_ALLOW = ("PATH", "HOME", "LANG", "LC_*", "TZ", "USER", "LOGNAME", "TERM", "TMPDIR")
# Variables that make glibc's dynamic loader (or libc itself) load code from a path: refused in
# any task's env, since they reach every program it starts.
LOADER_ENV = (
    "LD_*", "GCONV_PATH", "GLIBC_TUNABLES", "HOSTALIASES", "LOCPATH", "NLSPATH",
    "MALLOC_TRACE", "RESOLV_HOST_CONF", "GETCONF_DIR",
)  # fmt: skip
# With an allowlist, also what makes an allowed interpreter or program run other code than the
# one checked: startup files, module paths, injected options, exported shell functions, and
# PATH (an allowed script's commands are found through it).
CODE_LOADING_ENV = (
    *LOADER_ENV,
    "PATH", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "BASH_FUNC_*", "PS4", "PROMPT_COMMAND",
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONEXECUTABLE",
    "PYTHONWARNINGS", "PYTHONBREAKPOINT", "PYTHONPLATLIBDIR", "PYTHONINSPECT",
    "PERL5LIB", "PERLLIB", "PERL5OPT", "PERL5DB", "RUBYLIB", "RUBYOPT",
    "NODE_OPTIONS", "NODE_PATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS",
    "CLASSPATH", "LUA_PATH*", "LUA_CPATH*", "LUA_INIT*", "TCLLIBPATH", "GIT_EXEC_PATH",
    "GIT_CONFIG*", "GIT_SSH*", "EDITOR", "VISUAL", "PAGER", "IFS",
)  # fmt: skip


class Refused(Exception):
    """The policy does not admit an assignment; the message says why."""


@dataclass(frozen=True, slots=True)
class Limits:
    cpu_s: int | None = None
    address_space_mb: int | None = None
    open_files: int | None = None
    processes: int | None = None

    def rlimits(self) -> tuple[tuple[int, int], ...]:
        """(RLIMIT_*, value) of each limit set: soft and hard alike."""
        limits = (
            (resource.RLIMIT_CPU, self.cpu_s),
            (resource.RLIMIT_AS, self.address_space_mb and self.address_space_mb * 1024 * 1024),
            (resource.RLIMIT_NOFILE, self.open_files),
            (resource.RLIMIT_NPROC, self.processes),
        )
        return tuple((number, value) for number, value in limits if value is not None)


SCRIPT_PATH = f"/dev/fd/{SCRIPT_FD}"


def script_argv(script: bytes, args: tuple[str, ...]) -> tuple[str, ...]:
    """How a shipped script runs, as the kernel would run a file of it: its #! line names the
    interpreter (and at most one argument), else /bin/sh reads it. The worker starts the
    interpreter itself with the script as SCRIPT_PATH, so the script need not be executable
    (or on a file system that allows exec) anywhere."""
    if script.startswith(b"#!"):
        line = script[2:].split(b"\n", 1)[0].decode("utf-8", "surrogateescape").strip()
        interpreter, _, argument = line.partition(" ")
        if interpreter:
            extra = (argument.strip(),) if argument.strip() else ()
            return (interpreter, *extra, SCRIPT_PATH, *args)
    return ("/bin/sh", SCRIPT_PATH, *args)


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start an admitted attempt: what the worker asks of its spawner
    (gridrun.worker.spawning)."""

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str | None
    scratch: Path | None = None  # a fresh directory to remove when the attempt ends
    namespace: int | None = None  # a mount namespace to spawn it in (its own /tmp)
    executable: str | None = None  # the checked file to exec (argv[0] stays as the task gave it)
    ids: tuple[int, int] | None = None  # (uid, gid) it runs as, no other groups; None: ours
    rlimits: tuple[tuple[int, int], ...] = ()
    stdin: bytes | None = None  # what it reads on fd 0 (None: /dev/null)
    script: bytes | None = None  # a script its argv runs as SCRIPT_PATH (held on SCRIPT_FD)


def _already(uid: int, gid: int | None) -> bool:
    """The worker runs as exactly that identity (real and effective ids, no other groups), so
    the switch would change nothing: `--run-as root` on a root worker costs no extra exec."""
    return (
        os.getuid() == os.geteuid() == uid
        and gid is not None
        and os.getgid() == os.getegid() == gid
        and set(os.getgroups()) <= {gid}
    )


@functools.cache
def _env_matcher(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for the allowed names (checked for every variable of every task)."""
    return re.compile("|".join(fnmatch.translate(p) for p in patterns) or "(?!)")


@dataclass(frozen=True, slots=True)
class Policy:
    allow: tuple[str, ...] = ()
    allow_shell: bool = False
    run_as: str | None = None  # "user" or "user:group"
    limits: Limits = field(default_factory=Limits)
    cwd_mode: Literal["worker", "fresh"] = "worker"
    cwd_roots: tuple[str, ...] = ()
    env_allow: tuple[str, ...] = DEFAULT_ENV_ALLOW
    work_dir: Path = Path(".")

    def check_startup(self) -> None:
        """Raise ConfigError for settings that cannot work on this machine."""
        if self.run_as is not None:
            if os.geteuid() != 0:
                raise ConfigError("--run-as needs the worker to run as root")
            self._identity()

    def _identity(self) -> tuple[int, int, pwd.struct_passwd]:
        assert self.run_as is not None
        user, _, group = self.run_as.partition(":")
        try:
            entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
        except KeyError:
            raise ConfigError(f"--run-as: no user {user!r} on this machine") from None
        gid = entry.pw_gid
        if group:
            try:
                gid = grp.getgrnam(group).gr_gid if not group.isdigit() else int(group)
            except KeyError:
                raise ConfigError(f"--run-as: no group {group!r} on this machine") from None
        return entry.pw_uid, gid, entry

    def admit(
        self,
        task_id: str,
        attempt: int,
        argv: tuple[str, ...],
        shell: bool,
        cwd: str | None,
        task_env: Mapping[str, str],
        base_env: Mapping[str, str],
        identity: Identity | None = None,
        workdir: bool = False,
    ) -> Launch:
        """Decide and prepare; raise Refused with a reason a user can act on. With an
        `identity`, the attempt runs as its uid (and that gid alone), HOME and TMPDIR its
        private directory. With `workdir` (a task with files), it has a fresh working
        directory of its own (its cwd unless it gives one; GRIDRUN_WORKDIR)."""
        if shell and not self.allow_shell:
            raise Refused("this worker does not run shell tasks (start it with --allow-shell)")
        denied = _env_matcher(CODE_LOADING_ENV if self.allow else LOADER_ENV)
        for name in task_env:
            if denied.match(name):
                raise Refused(
                    f"env {name} makes programs load other code; this worker refuses it"
                    + (" (it has an allowlist)" if self.allow else "")
                )
        env = {k: v for k, v in base_env.items() if self._env_allowed(k)}
        env.update(task_env)
        executable = None
        if self.allow and not shell:  # resolved only for the allowlist: ~50 us of lookups
            worker_path = base_env.get("PATH", os.defpath)
            resolved = self._resolve(argv[0], worker_path, cwd)
            if not self._allowed(argv[0], resolved, worker_path):
                raise Refused(
                    f"{argv[0]!r} ({resolved or 'not found'}) is not in this worker's allowlist"
                )
            executable = resolved  # what was checked is what runs, never the name again
        user = group = None
        if identity is not None:
            user = group = identity.uid
            name = f"gridrun-task-{identity.uid}"
            home = str(identity.home)
            env.update(HOME=home, TMPDIR=home, USER=name, LOGNAME=name)
        elif self.run_as is not None:
            user, group, entry = self._identity()
            env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
        scratch = None
        if cwd is not None and self.cwd_roots and not self._under_roots(cwd):
            raise Refused(f"cwd {cwd!r} is outside this worker's allowed roots")
        if workdir or (cwd is None and self.cwd_mode == "fresh"):
            scratch = self.work_dir / "tasks" / f"{task_id}-{attempt}"
            if workdir and scratch.exists():  # (left by a worker that died: fresh, always)
                shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True, exist_ok=True)
            if user is not None:
                os.chown(scratch, user, group if group is not None else -1)
            if workdir:
                env["GRIDRUN_WORKDIR"] = str(scratch)
            cwd = cwd if cwd is not None else str(scratch)
        ids = None
        if user is not None and not _already(user, group):
            ids = (user, group if group is not None else user)
        return Launch(
            argv=argv, env=env, cwd=cwd, scratch=scratch, executable=executable,
            namespace=identity.namespace if identity is not None else None,
            ids=ids, rlimits=self.limits.rlimits(),
        )  # fmt: skip

    def _env_allowed(self, name: str) -> bool:
        return _env_matcher(self.env_allow).match(name) is not None

    @staticmethod
    def _resolve(program: str, worker_path: str, cwd: str | None) -> str | None:
        """The real path of the file argv[0] names: a bare name is looked up in the worker's
        own PATH only; a path is taken relative to the task's cwd."""
        if "/" in program:
            candidate = os.path.realpath(Path(cwd or ".") / program)
            return candidate if os.path.isfile(candidate) else None
        found = shutil.which(program, path=worker_path)
        return os.path.realpath(found) if found else None

    def _allowed(self, program: str, resolved: str | None, worker_path: str) -> bool:
        if resolved is None:
            return False
        for pattern in self.allow:
            if "/" in pattern:
                if fnmatch.fnmatchcase(resolved, pattern):
                    return True
            elif fnmatch.fnmatchcase(os.path.basename(program), pattern):
                # that name as the worker's PATH finds it, and nothing else of that name
                found = shutil.which(os.path.basename(program), path=worker_path)
                if found is not None and os.path.realpath(found) == resolved:
                    return True
        return False

    def _under_roots(self, cwd: str) -> bool:
        real = os.path.realpath(cwd)
        return any(
            real == os.path.realpath(root) or real.startswith(os.path.realpath(root) + os.sep)
            for root in self.cwd_roots
        )
