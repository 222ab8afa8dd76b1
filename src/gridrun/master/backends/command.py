"""A command of the user's own starts an allocation (ssh to a host, a cloud CLI, a local
`nohup`): the queue's raw arguments are that command; the allocation's worker script (the
same lines a Slurm job runs: the credential, then `gridrun worker`) comes on its standard
input, with GRIDRUN_ALLOC_ID and GRIDRUN_ALLOC_QUEUE in its environment. It must start the
workers and return (within 30 s); the first line it prints, if any, is the allocation's id in
its world (a pid, an instance id), else the allocation's own. `--stop-command` (optional)
cancels one: it is run with that id as its last argument.

Such a command has no queue to ask: an allocation counts as running from its start, and as
ended once its workers, having joined, are all gone (idle, or at their time limit) and their
leases lapsed (--liveness-timeout after their last word, and not before a restarted master
has given them 15 s to find it: its restart is not their leaving); one whose workers never
join is stopped after --alloc-connect-timeout, as Slurm's are."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence

from gridrun.allocating import AllocState
from gridrun.errors import AllocRefused
from gridrun.master.backends import Status, Submission, run_command, worker_lines


class Command:
    name = "command"
    tracks = False

    def __init__(self, stop: Sequence[str] = ()) -> None:
        self.stop = tuple(stop)

    async def submit(self, submission: Submission, *, hold: bool = False) -> str:
        config, allocation = submission.queue.config, submission.allocation
        if not config.args:
            raise AllocRefused("the command backend needs the command that starts workers")
        if hold:  # a dry run: the command is not run (it would start workers), only found
            if shutil.which(config.args[0]) is None:
                raise AllocRefused(f"{config.args[0]}: no such command on the master's host")
            return allocation.id
        script = "#!/bin/sh\n" + "\n".join(worker_lines(submission)) + "\n"
        env = {"GRIDRUN_ALLOC_ID": allocation.id, "GRIDRUN_ALLOC_QUEUE": submission.queue.name}
        code, out, err = await run_command(config.args, stdin=script.encode(), env=env)
        if code != 0:
            said = " ".join((err.strip() or out.strip() or f"exit status {code}").split())
            raise AllocRefused(f"{config.args[0]} failed: {said[:2000]}")
        first = out.strip().splitlines()[0].strip() if out.strip() else ""
        return first[:200] or allocation.id

    async def statuses(self, ids: Sequence[str]) -> Mapping[str, Status]:
        return {i: Status(AllocState.RUNNING, "started") for i in ids}

    async def cancel(self, ids: Sequence[str]) -> None:
        for backend_id in ids:
            if not self.stop:
                continue
            code, out, err = await run_command([*self.stop, backend_id])
            if code != 0:
                said = " ".join((err.strip() or out.strip() or f"exit status {code}").split())
                raise AllocRefused(f"{self.stop[0]} failed: {said[:2000]}")
