"""`gridrun alloc add|ls|info|pause|resume|rm|dry-run`: allocation queues, which bring workers
up through the cluster's scheduler (Slurm's sbatch) as queued work needs them (admin)."""

from __future__ import annotations

import shlex
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gridrun.cli.common import JsonOut, Url, app, connect, fail, guard, print_json
from gridrun.cli.render import cell, tsv
from gridrun.errors import InvalidSpec
from gridrun.forms import parse_duration, parse_labels

alloc_app = typer.Typer(
    help="Allocation queues: workers brought up through the cluster's scheduler (Slurm) as"
    " queued work needs them, and let go when idle (admin).",
    no_args_is_help=True,
)
app.add_typer(alloc_app, name="alloc")


class BackendName(StrEnum):
    SLURM = "slurm"
    COMMAND = "command"


BackendArg = Annotated[
    BackendName,
    typer.Argument(help="slurm (sbatch), or command (a command of yours starts the workers)."),
]
RawArgs = Annotated[
    list[str] | None,
    typer.Argument(
        help="After --: sbatch's arguments (-p, -A, --qos...), or the command that starts the"
        " workers (it reads their script on stdin)."
    ),
]
StopCommand = Annotated[
    str | None,
    typer.Option(help="The command backend's: what cancels an allocation (its id appended)."),
]
TimeLimit = Annotated[
    str, typer.Option("--time-limit", help="Each allocation's walltime (1h, 30m); required.")
]
Backlog = Annotated[
    int, typer.Option(min=1, max=1000, help="Most allocations waiting in the cluster's queue.")
]
MaxWorkers = Annotated[
    int | None, typer.Option(min=1, help="Most workers of this queue at once (default: no cap).")
]
PerAlloc = Annotated[int, typer.Option(min=1, help="Workers in each allocation (one a node).")]
IdleTimeout = Annotated[
    str, typer.Option("--idle-timeout", help="A worker leaves after this long with nothing to run.")
]
Slots = Annotated[
    int | None, typer.Option(min=1, help="Each worker's slots (default: its node's CPUs).")
]
Labels = Annotated[
    list[str] | None, typer.Option("--label", "-l", help="K=V: each worker's labels (repeatable).")
]
WorkerArgs = Annotated[
    list[str] | None,
    typer.Option(help="More arguments for `gridrun worker`, one shell-quoted string (repeatable)."),
]
WorkerCommand = Annotated[
    str | None,
    typer.Option(help="What runs a worker on the nodes (default: this master's own gridrun)."),
]
MasterAddress = Annotated[
    str | None,
    typer.Option("--master", help="The gRPC host:port the workers dial (default: the master's)."),
]


def _config(
    backend: BackendName, time_limit: str, backlog: int, max_workers: int | None,
    workers_per_alloc: int, idle_timeout: str, slots: int | None, label: list[str] | None,
    worker_args: list[str] | None, worker_command: str | None, master: str | None,
    args: list[str] | None, stop_command: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    try:
        body: dict[str, Any] = {
            "backend": str(backend),
            "time_limit": parse_duration(time_limit, "--time-limit"),
            "backlog": backlog,
            "max_workers": max_workers,
            "workers_per_alloc": workers_per_alloc,
            "idle_timeout": parse_duration(idle_timeout, "--idle-timeout"),
            "slots": slots,
            "labels": parse_labels(label or []),
            "worker_args": [a for text in worker_args or [] for a in shlex.split(text)],
            "worker_command": shlex.split(worker_command) if worker_command else [],
            "master": master or "",
            "args": list(args or []),
            "stop_command": shlex.split(stop_command) if stop_command else [],
        }
    except (InvalidSpec, ValueError) as exc:
        fail(str(exc), 2)
    return body


@alloc_app.command("add")
def add(
    backend: BackendArg,
    name: Annotated[str, typer.Option("--name", help="The queue's name.")],
    time_limit: TimeLimit,
    args: RawArgs = None,
    backlog: Backlog = 1,
    max_workers: MaxWorkers = None,
    workers_per_alloc: PerAlloc = 1,
    idle_timeout: IdleTimeout = "5m",
    slots: Slots = None,
    label: Labels = None,
    worker_args: WorkerArgs = None,
    worker_command: WorkerCommand = None,
    master: MasterAddress = None,
    stop_command: StopCommand = None,
    no_dry_run: Annotated[
        bool, typer.Option("--no-dry-run", help="Add it without first testing it on sbatch.")
    ] = False,
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """Add an allocation queue: after a dry run the scheduler accepts, it submits workers
    as queued tasks that fit them wait, within its caps."""
    body = _config(
        backend, time_limit, backlog, max_workers, workers_per_alloc, idle_timeout, slots,
        label, worker_args, worker_command, master, args, stop_command,
    )  # fmt: skip
    with guard, connect(url) as client:
        queue = client.alloc_add(name, body, dry_run=not no_dry_run)
    if json_out:
        print_json(queue)
        return
    print(f"allocation queue {queue['name']} added ({_summary(queue)})")


@alloc_app.command("dry-run")
def dry_run(
    backend: BackendArg,
    time_limit: TimeLimit = "1h",
    args: RawArgs = None,
    workers_per_alloc: PerAlloc = 1,
    slots: Slots = None,
    label: Labels = None,
    worker_args: WorkerArgs = None,
    worker_command: WorkerCommand = None,
    master: MasterAddress = None,
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """Submit a held test allocation, say what the scheduler answered, and cancel it (exit 1
    when it refuses)."""
    body = _config(
        backend, time_limit, 1, None, workers_per_alloc, "5m", slots, label, worker_args,
        worker_command, master, args,
    )  # fmt: skip
    with guard, connect(url) as client:
        message = client.alloc_dry_run(body)
    if json_out:
        print_json({"ok": True, "message": message})
        return
    print(message)


@alloc_app.command("ls")
def ls(url: Url = None, json_out: JsonOut = False) -> None:
    """The allocation queues: state, caps, allocations active now, why paused."""
    with guard, connect(url) as client:
        queues = client.alloc_queues()
    if json_out:
        print_json(queues)
        return
    headers = [
        "NAME",
        "STATE",
        "BACKEND",
        "TIME LIMIT",
        "BACKLOG",
        "MAX WORKERS",
        "ACTIVE",
        "REASON",
    ]
    rows = [
        [
            q["name"], q["state"], q["config"]["backend"], _secs(q["config"]["time_limit"]),
            str(q["config"]["backlog"]), _n(q["config"]["max_workers"]), str(q["active"]),
            q["reason"] or "",
        ]
        for q in queues
    ]  # fmt: skip
    if not sys.stdout.isatty():
        print(tsv(headers, rows))
        return
    if not queues:
        print("no allocation queues (gridrun alloc add slurm --name Q --time-limit 1h -- ARGS)")
        return
    table = Table(*headers)
    for row in rows:
        table.add_row(*(cell(c) for c in row))
    Console().print(table)


@alloc_app.command("info")
def info(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """A queue and its allocations (newest first): Slurm job ids, states, workers, errors."""
    with guard, connect(url) as client:
        queue = client.alloc_info(name)
    if json_out:
        print_json(queue)
        return
    config = queue["config"]
    print(f"queue {queue['name']}: {queue['state']} ({_summary(queue)})")
    if queue["reason"]:
        print(f"  reason: {queue['reason']}")
    if queue["failures"]:
        print(f"  failures in a row: {queue['failures']}")
    if config["args"]:
        print(f"  {config['backend']} arguments: {shlex.join(config['args'])}")
    headers = ["ALLOCATION", "JOB", "STATE", "WORKERS", "ONLINE", "CREATED", "ENDED", "ERROR"]
    rows = [
        [
            a["id"], a["backend_id"] or "-", a["state"], str(a["workers"]),
            str(a["workers_online"]), _at(a["created_at"]), _at(a["ended_at"]), a["error"] or "",
        ]
        for a in queue["allocations"] or []
    ]  # fmt: skip
    if not rows:
        print("  no allocations yet")
    elif not sys.stdout.isatty():
        print(tsv(headers, rows))
    else:
        table = Table(*headers)
        for row in rows:
            table.add_row(*(cell(c) for c in row))
        Console().print(table)


def _set_paused(name: str, paused: bool, url: str | None, json_out: bool) -> None:
    with guard, connect(url) as client:
        queue = client.alloc_pause(name, paused)
    if json_out:
        print_json(queue)
        return
    print(f"allocation queue {name} {'paused' if paused else 'resumed'}")


@alloc_app.command("pause")
def pause(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """Submit nothing more from this queue (its allocations keep running)."""
    _set_paused(name, True, url, json_out)


@alloc_app.command("resume")
def resume(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """Submit again from this queue, its failures forgotten."""
    _set_paused(name, False, url, json_out)


@alloc_app.command("rm")
def rm(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    url: Url = None,
) -> None:
    """Remove a queue, cancelling every allocation it started (their tasks end as a lost
    worker's do)."""
    with guard, connect(url) as client:
        client.alloc_remove(name)
    print(f"allocation queue {name} removed")


def _summary(queue: dict[str, Any]) -> str:
    c = queue["config"]
    parts = [
        c["backend"], f"time limit {_secs(c['time_limit'])}", f"backlog {c['backlog']}",
        f"max workers {_n(c['max_workers'])}", _each(c["workers_per_alloc"]),
        f"idle {_secs(c['idle_timeout'])}",
    ]  # fmt: skip
    if c["slots"]:
        parts.append(f"{c['slots']} slots")
    if c["labels"]:
        parts.append(" ".join(f"{k}={v}" for k, v in c["labels"].items()))
    return ", ".join(parts)


def _each(workers: int) -> str:
    return f"{workers} worker{'s' if workers > 1 else ''} each"


def _secs(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def _at(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
