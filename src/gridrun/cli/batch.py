"""`gridrun submit --file`: a file of commands, one task a line, submitted in batches, with a
progress bar until all have ended and, at the end, which lines did not succeed."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from gridrun.cli import render
from gridrun.cli.common import err, fail, print_json, say
from gridrun.cli.options import TaskOptions
from gridrun.client import Client, TaskDict
from gridrun.client.calls import TERMINAL
from gridrun.errors import ClientError, GridrunError
from gridrun.model import TaskState
from gridrun.text import visible

FILE_BATCH = 1000  # tasks per POST: each batch is one transaction on the master
PROGRESS_EVERY_S = 0.5


def command_lines(file: Path) -> list[tuple[int, str]]:
    """(line number, command) for each command in the file."""
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}", 2)
    lines = [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        fail(f"{file} has no commands (one per line; blank lines and # comments are skipped)", 2)
    return lines


def submit_file(
    client: Client,
    file: Path,
    lines: list[tuple[int, str]],
    options: TaskOptions,
    no_wait: bool,
    json_out: bool,
) -> None:
    """Submit the lines in batches; unless told not to, show progress until all have ended.
    With --idempotency-key K, line N gets K-N: submitting the same file again is harmless."""
    label = options.name or file.name
    key = options.idempotency_key
    bodies = [
        options.body([cmd], name=label, idempotency_key=f"{key}-{n}" if key else None)
        for n, cmd in lines
    ]
    ids: list[str] = []
    for start in range(0, len(bodies), FILE_BATCH):
        try:
            ids += client.submit_ids(bodies[start : start + FILE_BATCH])
        except GridrunError as exc:
            first, last = lines[start][0], lines[min(start + FILE_BATCH, len(lines)) - 1][0]
            done = f"; lines before {first} were submitted" if start else ""
            raise ClientError(f"lines {first}-{last} of {file}: {exc.message}{done}") from None
    if no_wait:
        print_json(ids) if json_out else print("\n".join(ids))
        return
    ended = _progress(client, label, ids)
    counts = {state: sum(t["state"] == state for t in ended.values()) for state in TERMINAL}
    if json_out:
        print_json(list(ended.values()))
    else:
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()) if n)
        say(f"{len(ids)} tasks from {file}: {summary}")
        _say_failed_lines(file, label, lines, ids, ended)
    failed = len(ids) - counts.get(TaskState.SUCCEEDED, 0)
    raise typer.Exit(1 if failed else 0)


FAILED_LINES_SHOWN = 10


def _say_failed_lines(
    file: Path,
    label: str,
    lines: list[tuple[int, str]],
    ids: list[str],
    ended: dict[str, TaskDict],
) -> None:
    """Which lines did not succeed (the first FAILED_LINES_SHOWN), as FILE:LINE: how, the
    command, and the task id, so a user can look at one or fix the file."""
    failed = [
        (number, command, ended[task_id])
        for (number, command), task_id in zip(lines, ids, strict=True)
        if ended[task_id]["state"] != TaskState.SUCCEEDED
    ]
    for number, command, task in failed[:FAILED_LINES_SHOWN]:
        say(f"  {file}:{number}: {render.outcome(task)}: {visible(command)}  ({task['id']})")
    if len(failed) > FAILED_LINES_SHOWN:
        more = len(failed) - FAILED_LINES_SHOWN
        say(f"  and {more:,} more (gridrun ls --name {shlex.quote(visible(label))})")


def _progress(client: Client, name: str, ids: list[str]) -> dict[str, TaskDict]:
    """A progress bar (on stderr) of the tasks ended, succeeded and failed; the ended tasks."""
    mine, ended = set(ids), dict[str, TaskDict]()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[green]{task.fields[ok]} ok[/] [red]{task.fields[bad]} failed[/]"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as progress:
        bar = progress.add_task(name, total=len(ids), ok=0, bad=0)
        while len(ended) < len(ids):
            cursor = None
            while True:  # every page of tasks with this name; ours are picked by id
                page, cursor = client.list_tasks(name=name, limit=1000, cursor=cursor)
                for task in page:
                    if task["id"] in mine and task["state"] in TERMINAL:
                        ended[task["id"]] = task
                if cursor is None:
                    break
            ok = sum(t["state"] == TaskState.SUCCEEDED for t in ended.values())
            progress.update(bar, completed=len(ended), ok=ok, bad=len(ended) - ok)
            if len(ended) < len(ids):
                time.sleep(PROGRESS_EVERY_S)
    return ended
