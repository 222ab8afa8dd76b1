"""Where allocations come from: a backend per cluster scheduler, behind one small interface
(`Backend`), so Slurm is one module (`slurm`) and another scheduler is another. A backend
submits an allocation (a batch script that runs the queue's `gridrun worker`s), reads the
states of those it submitted, and cancels them; each call is a command of the scheduler's
own (sbatch, squeue, scancel), run without a shell and within a timeout."""

from __future__ import annotations

import asyncio
import math
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gridrun.allocating import BACKENDS, Allocation, AllocQueue, AllocState, QueueConfig
from gridrun.errors import AllocRefused, BadRequest

COMMAND_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Submission:
    """One allocation to submit: its queue, its record, the credential its workers join
    with, the address they dial, and a directory the backend may keep its files in."""

    queue: AllocQueue
    allocation: Allocation
    token: str
    master: str
    workdir: Path


@dataclass(frozen=True, slots=True)
class Status:
    state: AllocState
    detail: str | None = None  # the scheduler's word for it (PENDING (Priority), FAILED, ...)


class Backend(Protocol):
    name: str
    # it knows its allocations' states (a scheduler's queue); False: an allocation runs from
    # its start until its workers, once joined, are all gone (the command backend)
    tracks: bool

    async def submit(self, submission: Submission, *, hold: bool = False) -> str:
        """Submit the allocation; its id in the scheduler. `hold`: submitted held (never to
        start), for a dry run. Raises AllocRefused with the scheduler's reason."""
        ...

    async def statuses(self, ids: Sequence[str]) -> Mapping[str, Status]:
        """The state of each allocation it knows of among `ids` (one it has forgotten is
        left out)."""
        ...

    async def cancel(self, ids: Sequence[str]) -> None: ...


def worker_argv(submission: Submission, n: int) -> list[str]:
    """The command line of the allocation's `n`th worker: the master's own executable (or
    the queue's --worker-command), the address, a name of the allocation's, a data dir of its
    own, when it leaves, and the queue's slots, labels and worker arguments. The credential
    travels in GRIDRUN_JOIN_TOKEN, not in the arguments (visible in ps)."""
    config = submission.queue.config
    command = list(config.worker_command) or [sys.executable, "-m", "gridrun", "worker"]
    argv = [
        *command,
        "--master", submission.master,
        "--name", submission.allocation.worker_name(n),
        "--idle-timeout", f"{config.idle_timeout_s:g}s",
        "--time-limit", f"{config.worker_time_s:g}s",
    ]  # fmt: skip
    if config.slots is not None:
        argv += ["--slots", str(config.slots)]
    for key, value in config.labels.items():
        argv += ["--label", f"{key}={value}"]
    if config.resources.cpu:
        argv += ["--cpus", str(math.ceil(config.resources.cpu))]
    if config.resources.memory_mb:
        argv += ["--memory-mb", str(config.resources.memory_mb)]
    if config.resources.gpus:
        argv += ["--gpus", str(config.resources.gpus)]
    return argv + list(config.worker_args)


def shell_line(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def job_env() -> dict[str, str]:
    """The environment a scheduler's command runs with, and so (Slurm exports it) the jobs
    it starts: the master's, without its GRIDRUN_* settings (its tokens, its database URL):
    a job's workers get only what their batch script gives them."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GRIDRUN_")}


async def run_command(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a scheduler's command (`stdin` its input, `env`
    added to job_env()); a missing one or one that hangs past COMMAND_TIMEOUT_S is an
    AllocRefused that says so."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env={**job_env(), **(env or {})},
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise AllocRefused(
            f"{argv[0]} is not installed on the master's host (not on PATH)"
        ) from None
    except OSError as exc:
        raise AllocRefused(f"cannot run {argv[0]}: {exc.strerror}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), COMMAND_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AllocRefused(f"{argv[0]} did not answer within {COMMAND_TIMEOUT_S:g}s") from None
    code = proc.returncode if proc.returncode is not None else -1
    return code, out.decode(errors="replace"), err.decode(errors="replace")


def credential_lines(submission: Submission) -> list[str]:
    """The shell lines that give the allocation's workers its credential (in the script, not
    in their arguments: ps shows those)."""
    allocation = submission.allocation
    return [
        f"# gridrun allocation {allocation.id} of queue {submission.queue.name}: its credential",
        "# joins this allocation's workers only, and is revoked when the allocation ends",
        f"GRIDRUN_JOIN_TOKEN={submission.token}",
        "export GRIDRUN_JOIN_TOKEN",
    ]


def worker_lines(submission: Submission) -> list[str]:
    """The shell lines that start the allocation's workers with its credential: one `exec`d,
    or several in the background, waited for."""
    allocation = submission.allocation
    lines = credential_lines(submission)
    for n in range(allocation.workers):
        data = f'"${{TMPDIR:-/tmp}}/gridrun-{allocation.worker_name(n)}"'
        line = f"{shell_line(worker_argv(submission, n))} --data-dir {data}"
        lines.append(f"exec {line}" if allocation.workers == 1 else f"{line} &")
    if allocation.workers > 1:
        lines.append("wait")
    return lines


def backend_for(config: QueueConfig) -> Backend:
    """The backend of a queue's config."""
    from gridrun.master.backends.command import Command
    from gridrun.master.backends.slurm import Slurm

    if config.backend == "slurm":
        return Slurm()
    if config.backend == "command":
        return Command(config.stop)
    known = ", ".join(BACKENDS)
    raise BadRequest(f"unknown allocation backend {config.backend!r} (known: {known})")
