"""`gridrun schedule add|ls|rm`: tasks made on a cron schedule (UTC), once per slot."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gridrun.cli.common import COMMAND_CONTEXT, JsonOut, Url, app, connect, fail, guard, print_json
from gridrun.cli.tasks import (
    Command,
    Cpu,
    Cwd,
    Env,
    Gpus,
    MaxAttempts,
    MemoryMb,
    Name,
    On,
    Placement,
    Priority,
    SecretEnv,
    SecretEnvFile,
    Shell,
    Strategy,
    TaskClass,
    Timeout,
    task_body,
)

schedule_app = typer.Typer(help="Tasks made on a cron schedule (UTC).", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")


@schedule_app.command("add", context_settings=COMMAND_CONTEXT)
def add(
    cron: Annotated[
        str, typer.Option("--cron", help="Cron expression in UTC, e.g. '*/5 * * * *'.")
    ],
    command: Command = None,
    shell: Shell = False,
    env: Env = None,
    secret_env: SecretEnv = None,
    secret_env_file: SecretEnvFile = None,
    cwd: Cwd = None,
    timeout: Timeout = None,
    priority: Priority = 0,
    on: On = None,
    name: Name = None,
    max_attempts: MaxAttempts = 1,
    cpu: Cpu = 0,
    memory_mb: MemoryMb = 0,
    gpus: Gpus = 0,
    task_class: TaskClass = None,
    placement: Placement = Strategy.SPREAD,
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """Make a task on a cron schedule: once per slot, across master restarts, until removed."""
    if not command:
        fail("give a command, e.g. gridrun schedule add --cron '0 * * * *' -- ./hourly.sh", 2)
    body = task_body(
        command, shell=shell, env=env, cwd=cwd, timeout=timeout, priority=priority, on=on,
        name=name, max_attempts=max_attempts, retry_delay=1.0, retry_on=None, queue_timeout=None,
        idempotency_key=None, cpu=cpu, memory_mb=memory_mb, gpus=gpus, task_class=task_class,
        placement=placement, secret_env=secret_env, secret_env_file=secret_env_file,
    )  # fmt: skip
    with guard, connect(url) as client:
        schedule = client.add_schedule(cron, **body)
    if json_out:
        print_json(schedule)
    else:
        print(schedule["id"])


@schedule_app.command("ls")
def ls(url: Url = None, json_out: JsonOut = False) -> None:
    """List schedules: cron, command, next slot, last task."""
    with guard, connect(url) as client:
        rows = client.schedules()
    if json_out:
        print_json(rows)
        return
    table = Table("id", "name", "cron", "command", "next (UTC)", "last task")
    for s in rows:
        table.add_row(
            s["id"], escape(s["name"] or "-"), escape(s["cron"]),
            escape(s["cmd"] or " ".join(s["argv"])), s["next_at"], s["last_task"] or "-",
        )  # fmt: skip
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
