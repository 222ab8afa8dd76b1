"""`gridrun submit --file`: a file of commands, one task a line, submitted as one job, with a
progress bar until all have ended and, at the end, which lines did not succeed."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from gridrun.cli import render
from gridrun.cli.common import err, fail, print_json, say
from gridrun.cli.jobs import follow_job
from gridrun.cli.options import TaskOptions
from gridrun.client import Client, JobDict
from gridrun.errors import ClientError, GridrunError
from gridrun.text import visible


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
    """Submit the lines as one job (one transaction: all of them or none); unless told not
    to, show progress until all have ended, then which lines did not succeed. With
    --idempotency-key K, the command at index N gets K-N: submitting the same file again is
    harmless."""
    label = options.name or file.name
    template = {
        k: v for k, v in options.body(["-"], name=label).items() if k not in ("cmd", "argv")
    }
    try:
        made = client.submit_array(template, commands=[cmd for _, cmd in lines])
    except GridrunError as exc:
        raise ClientError(f"{file}: {exc.message} (nothing was submitted)") from None
    job_id = made["id"]
    if no_wait:
        tasks = sorted(client.iter_tasks(job=job_id), key=lambda t: t["job_index"] or 0)
        ids = [t["id"] for t in tasks]
        print_json(ids) if json_out else print("\n".join(ids))
        err.print(f"job {job_id} (gridrun job show {job_id})", highlight=False)
        return
    job = follow_job(client, job_id, label)
    if json_out:
        print_json(job)
    else:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(job["counts"].items()) if n)
        say(f"{job['size']} tasks from {file}: {counts}")
        _say_failed_lines(file, lines, job)
    raise typer.Exit(0 if job["succeeded"] == job["size"] else 1)


FAILED_LINES_SHOWN = 10


def _say_failed_lines(file: Path, lines: list[tuple[int, str]], job: JobDict) -> None:
    """Which lines did not succeed (the first FAILED_LINES_SHOWN), as FILE:LINE: how, the
    command, and the task id, so a user can look at one or fix the file."""
    bad = job["unsuccessful"]
    for task in bad[:FAILED_LINES_SHOWN]:
        number, command = lines[task["index"] or 0]
        say(f"  {file}:{number}: {render.outcome(task)}: {visible(command)}  ({task['id']})")
    more = job["ended"] - job["succeeded"] - min(len(bad), FAILED_LINES_SHOWN)
    if more > 0:
        say(f"  and {more:,} more (gridrun job show {job['id']})")
