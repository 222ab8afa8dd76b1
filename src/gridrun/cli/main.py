"""The `gridrun` command (Typer): start the pieces, submit and inspect tasks.

Every option has a GRIDRUN_* environment variable. Client commands (`cli.tasks`) talk to the
master through `gridrun.client`; `master` (`cli.master_process`), `worker`
(`cli.worker_process`) and `up` (`cli.up`) start processes.
"""

from __future__ import annotations

# `gridrun --help` lists the commands as they are defined: starting processes first
# isort: off
from gridrun.cli import master_process, worker_process, up
from gridrun.cli import tasks, retention, quotas, schedules, security

# isort: on
from gridrun.cli.common import app

__all__ = [  # noqa: RUF022
    "app", "main", "master_process", "worker_process", "up", "tasks", "retention", "quotas",
    "schedules", "security",
]  # fmt: skip


def main() -> None:
    app()
