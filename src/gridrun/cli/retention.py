"""Running a grid for a year: `gridrun gc` deletes ended tasks by hand (the master does it by
itself after --retain); `gridrun backup` and `gridrun restore` copy a SQLite database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gridrun.cli.common import JsonOut, Url, app, connect, fail, guard, print_json
from gridrun.forms import parse_duration
from gridrun.model import TERMINAL, TaskState


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


DbPath = Annotated[
    str,
    typer.Option("--db", envvar="GRIDRUN_DB", help="The master's SQLite file."),
]


def _sqlite(db: str) -> Path:
    if db.startswith(("postgresql://", "postgres://")):
        fail(
            "a PostgreSQL database is backed up with its own tools: pg_dump -Fc -f grid.dump"
            " URL, and restored with pg_restore -d URL grid.dump (see the README)"
        )
    return Path(db)


@app.command()
def backup(
    file: Annotated[Path, typer.Argument(help="The new file to write the copy to.")],
    db: DbPath = "gridrun-data/gridrun.db",
) -> None:
    """Copy a master's SQLite database, consistent, while it runs (SQLite's online backup)."""
    from gridrun.store import sqlite_backup

    with guard:
        size = sqlite_backup.backup(_sqlite(db), file)
    print(f"backed up {db} to {file} ({size:,} bytes)")


@app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="A file `gridrun backup` wrote.")],
    db: DbPath = "gridrun-data/gridrun.db",
) -> None:
    """Put a backup in place of a master's SQLite database (the master must be stopped)."""
    from gridrun.store import sqlite_backup

    with guard:
        sqlite_backup.restore(file, _sqlite(db))
    print(f"restored {db} from {file}; start the master")
