"""`gridrun schedule add|ls|rm`: tasks made on a cron schedule (UTC), once per slot."""

from __future__ import annotations

import shlex
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gridrun.cli.common import COMMAND_CONTEXT, JsonOut, Url, app, connect, fail, guard, print_json
from gridrun.cli.options import NO_OPTIONS, Command, TaskOptions, task_options
from gridrun.cli.render import cell, tsv

schedule_app = typer.Typer(help="Tasks made on a cron schedule (UTC).", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")


@schedule_app.command("add", context_settings=COMMAND_CONTEXT)
@task_options
def add(
    cron: Annotated[
        str, typer.Option("--cron", help="Cron expression in UTC, e.g. '*/5 * * * *'.")
    ],
    command: Command = None,
    options: TaskOptions = NO_OPTIONS,
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """Make a task on a cron schedule: once per slot, across master restarts, until removed."""
    if not command:
        fail("give a command, e.g. gridrun schedule add --cron '0 * * * *' -- ./hourly.sh", 2)
    if options.input or options.input_dir:
        fail("a schedule takes no --input (its tasks outlive an upload's retention);"
             " --collect is fine", 2)  # fmt: skip
    body = options.body(command)
    with guard, connect(url) as client:
        schedule = client.add_schedule(cron, **body)
    if json_out:
        print_json(schedule)
    else:
        print(schedule["id"])


@schedule_app.command("ls")
def ls(url: Url = None, json_out: JsonOut = False) -> None:
    """List schedules: cron, command, next slot, last task, slots over quota."""
    with guard, connect(url) as client:
        rows = client.schedules()
    if json_out:
        print_json(rows)
        return
    headers = ["ID", "NAME", "CRON", "COMMAND", "NEXT (UTC)", "LAST TASK", "OVER QUOTA"]
    cells = [
        [
            s["id"], s["name"] or "-", s["cron"], s["cmd"] or shlex.join(s["argv"]), s["next_at"],
            s["last_task"] or "-", str(s.get("over_quota", 0)),
        ]
        for s in rows
    ]  # fmt: skip
    if not sys.stdout.isatty():  # a pipe: whole ids, one line each (for `schedule rm`)
        print(tsv(headers, cells))
        return
    table = Table(*headers, box=None, header_style="bold")
    table.columns[0].no_wrap = True
    for row in cells:
        table.add_row(*(cell(c) for c in row))
    if not rows:
        table.caption = "no schedules"
    Console().print(table)


@schedule_app.command("rm")
def rm(
    schedule_id: Annotated[str, typer.Argument(help="The schedule's id.")],
    url: Url = None,
) -> None:
    """Remove a schedule (the tasks it already made stay)."""
    with guard, connect(url) as client:
        client.remove_schedule(schedule_id)
    print(f"removed schedule {schedule_id}")
