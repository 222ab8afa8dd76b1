"""`gridrun gc`: delete ended tasks by hand (the master does it by itself after --retain)."""

from __future__ import annotations

from typing import Annotated

import typer

from gridrun.cli.common import JsonOut, Url, app, connect, guard, print_json
from gridrun.model import TERMINAL, TaskState
from gridrun.spec import parse_duration


@app.command()
def gc(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Ended longer ago than this: 30s, 5m, 12h, 14d.")
    ],
    state: Annotated[
        list[TaskState] | None,
        typer.Option("--state", "-s", help="Only this ended state (repeatable; default: all)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """Delete ended tasks (with their attempts and output) that ended before a time."""
    with guard:
        seconds = parse_duration(older_than, "--older-than")
        states = [str(s) for s in state] if state else sorted(str(s) for s in TERMINAL)
        with connect(url) as client:
            deleted = client.gc(seconds, states, dry_run)
    if json_out:
        print_json({"deleted": deleted, "dry_run": dry_run})
    else:
        print(f"{'would delete' if dry_run else 'deleted'} {deleted} task(s)")
