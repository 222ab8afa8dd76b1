"""Slurm: an allocation is one batch job (`sbatch`), its workers the job's tasks (one, or
`srun` starting one a node); its state read with `squeue`, which knows a job until
MinJobAge after it ends (a job it has forgotten has ended); `scancel` to cancel.

The batch script is written to the queue's directory beside the master's data and given to
sbatch, which keeps its own copy: it holds the allocation's join credential, so the file is
the master's only (0600) and removed once submitted. The queue's raw sbatch arguments come
after ours on sbatch's command line, where they win over the script's #SBATCH lines
(`--output`, `--time`, a partition, an account)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

from gridrun.allocating import AllocState
from gridrun.errors import AllocRefused
from gridrun.master.backends import (
    Status,
    Submission,
    credential_lines,
    run_command,
    shell_line,
    worker_argv,
    worker_lines,
)

STATES = {
    "PENDING": AllocState.QUEUED,
    "CONFIGURING": AllocState.QUEUED,
    "REQUEUED": AllocState.QUEUED,
    "REQUEUE_HOLD": AllocState.QUEUED,
    "REQUEUE_FED": AllocState.QUEUED,
    "RESV_DEL_HOLD": AllocState.QUEUED,
    "SUSPENDED": AllocState.QUEUED,
    "RUNNING": AllocState.RUNNING,
    "COMPLETING": AllocState.RUNNING,
    "RESIZING": AllocState.RUNNING,
    "SIGNALING": AllocState.RUNNING,
    "STAGE_OUT": AllocState.RUNNING,
    "COMPLETED": AllocState.ENDED,
    "TIMEOUT": AllocState.ENDED,  # its walltime: its workers had left before (--time-limit)
    "CANCELLED": AllocState.CANCELLED,
    "DEADLINE": AllocState.FAILED,
    "FAILED": AllocState.FAILED,
    "NODE_FAIL": AllocState.FAILED,
    "BOOT_FAIL": AllocState.FAILED,
    "OUT_OF_MEMORY": AllocState.FAILED,
    "PREEMPTED": AllocState.FAILED,
    "REVOKED": AllocState.FAILED,
    "SPECIAL_EXIT": AllocState.FAILED,
}


def walltime(seconds: float) -> str:
    """sbatch's --time as H:MM:SS, whole minutes up (Slurm counts minutes)."""
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes // 60}:{minutes % 60:02d}:00"


def batch_script(submission: Submission) -> str:
    queue, allocation = submission.queue, submission.allocation
    config = queue.config
    lines = [
        "#!/bin/sh",
        f"#SBATCH --job-name=gridrun-{queue.name}",
        f"#SBATCH --time={walltime(config.time_limit_s)}",
        "#SBATCH --output=slurm-%j.out",
    ]
    if allocation.workers > 1:
        lines += [f"#SBATCH --nodes={allocation.workers}", "#SBATCH --ntasks-per-node=1"]
    if allocation.workers == 1:
        lines += worker_lines(submission)
    else:  # one a node, each named by its rank
        lines += credential_lines(submission)
        argv = worker_argv(submission, 0)
        name = allocation.worker_name(0)
        at = argv.index(name)
        stem = name[:-1]
        inner = (
            f'{shell_line(argv[:at])} "{stem}$SLURM_PROCID" {shell_line(argv[at + 1 :])}'
            f' --data-dir "${{TMPDIR:-/tmp}}/gridrun-{stem}$SLURM_PROCID"'
        )
        lines.append(f"exec srun --kill-on-bad-exit=0 /bin/sh -c {shell_line([inner])}")
    return "\n".join(lines) + "\n"


class Slurm:
    name = "slurm"
    tracks = True

    async def submit(self, submission: Submission, *, hold: bool = False) -> str:
        workdir = submission.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        script = workdir / f"alloc-{submission.allocation.id}.sh"
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(batch_script(submission))
        argv = ["sbatch", "--parsable"] + (["--hold"] if hold else [])
        argv += [*submission.queue.config.args, str(script)]
        try:
            code, out, err = await run_command(argv, cwd=workdir)
        finally:
            script.unlink(missing_ok=True)
        job_id = out.strip().split(";")[0]
        if code != 0 or not job_id.isdigit():
            raise AllocRefused(f"sbatch refused the allocation: {_said(err, out, code)}")
        return job_id

    async def statuses(self, ids: Sequence[str]) -> Mapping[str, Status]:
        if not ids:
            return {}
        found = await self._squeue(ids)
        if found is None:  # one id squeue no longer knows fails the whole call: one by one
            found = {}
            for job_id in ids:
                found.update(await self._squeue([job_id]) or {})
        return found

    async def _squeue(self, ids: Sequence[str]) -> dict[str, Status] | None:
        argv = [
            "squeue",
            "--noheader",
            "--states=all",
            "--format=%i|%T|%r",
            "--jobs",
            ",".join(ids),
        ]
        code, out, err = await run_command(argv)
        if code != 0:
            if "Invalid job id" in err:
                return None if len(ids) > 1 else {}
            raise AllocRefused(f"squeue failed: {_said(err, out, code)}")
        found = {}
        for line in out.splitlines():
            job_id, _, rest = line.strip().partition("|")
            state, _, reason = rest.partition("|")
            if job_id in ids and state:
                word = state if reason in ("", "None") else f"{state} ({reason})"
                found[job_id] = Status(STATES.get(state, AllocState.RUNNING), word)
        return found

    async def cancel(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        code, out, err = await run_command(["scancel", *ids])
        if code != 0 and "Invalid job id" not in err:
            raise AllocRefused(f"scancel failed: {_said(err, out, code)}")


def _said(err: str, out: str, code: int) -> str:
    text = " ".join((err.strip() or out.strip() or f"exit status {code}").split())
    return text[:2000]
