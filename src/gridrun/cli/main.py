"""The `gridrun` command (Typer): start the pieces, submit and inspect tasks.

Every option has a GRIDRUN_* environment variable. Client commands (`cli.tasks`) talk to the
master through `gridrun.client`; `master`, `worker` and `up` (`cli.processes`) start processes.
"""

from __future__ import annotations

from gridrun.cli import processes, quotas, retention, schedules, security, tasks
from gridrun.cli.common import app

__all__ = ["app", "main", "processes", "quotas", "retention", "schedules", "security", "tasks"]


def main() -> None:
    app()
