"""Keeping tasks away from the worker that runs them: its memory, its environment, its files.

- The worker process is made non-dumpable (prctl PR_SET_DUMPABLE 0): the kernel then owns its
  /proc files as root and refuses ptrace, so a task running as the same user cannot read
  /proc/<worker>/environ (the join token) or attach to it.
- A worker running as root runs each task as an unprivileged uid of its own unless told
  otherwise (gridrun.worker.identities), so tasks are apart from each other as well as from
  the worker. Its data dir (0700) and token files (0600) are then out of their reach.
- Secrets the worker holds in its environment are never handed to tasks, whatever --env-allow
  says.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from gridrun.worker.identities import DEFAULT_RANGE as DEFAULT_TASK_IDS

log = logging.getLogger("gridrun.worker")

PR_SET_DUMPABLE = 4
WORKER_SECRETS = ("GRIDRUN_JOIN_TOKEN", "GRIDRUN_TOKEN", "GRIDRUN_TLS_KEY")


def undumpable() -> bool:
    """Make this process non-dumpable; False where the platform has no prctl."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name, use_errno=True)
    prctl = getattr(libc, "prctl", None)
    if prctl is None or prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("could not make the worker non-dumpable: tasks of its user may read it")
        return False
    return True


def task_identity(run_as: str | None, task_ids: str | None) -> tuple[str | None, str | None]:
    """Who runs the tasks, as (run_as, task_ids): a root worker given neither runs each
    attempt as a uid of its own (gridrun.worker.identities); `--run-as USER` runs them all as
    USER, who then share one identity (each can read, signal and trace the others)."""
    if os.geteuid() != 0 or task_ids is not None:
        return run_as, task_ids
    if run_as is not None:
        if run_as.partition(":")[0] in ("root", "0"):
            log.warning(
                "tasks run as root (--run-as root): a task can read this worker's secrets and"
                " act as it"
            )
        else:
            log.warning(
                "every task runs as %s (--run-as): tasks of different owners share that"
                " identity, and each can read, signal and trace the others", run_as,
            )  # fmt: skip
        return run_as, None
    log.info("the worker runs as root: each task runs as a uid of its own (--task-ids %s)",
             DEFAULT_TASK_IDS)  # fmt: skip
    return None, DEFAULT_TASK_IDS


def task_base_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The worker's environment as tasks may inherit it (--env-allow filters it further)."""
    return {k: v for k, v in environ.items() if k not in WORKER_SECRETS}


def warn_if_readable(path: Path, what: str) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # reading it reports the error
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s %s can be read by others (mode %o): chmod 600 it", what, path,
                    stat.S_IMODE(mode))  # fmt: skip
