"""The `gridrun` command (Typer): start the pieces, submit and inspect tasks.

Every option has a GRIDRUN_* environment variable. Client commands talk to the master through
`gridrun.client`; `master`, `worker` and `up` start processes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from gridrun.cli import render
from gridrun.client import Client, TaskDict
from gridrun.client._sync import DEFAULT_URL
from gridrun.errors import GridrunError
from gridrun.model import TaskState, parse_labels

app = typer.Typer(
    name="gridrun",
    help="Run commands on a fleet of workers, durably. Start with `gridrun up`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
COMMAND_CONTEXT = {"allow_interspersed_args": False}

Url = Annotated[str, typer.Option("--url", envvar="GRIDRUN_URL", help="The master's HTTP address.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LogLevel = Annotated[
    str, typer.Option("--log-level", envvar="GRIDRUN_LOG_LEVEL", help="debug, info, warning")
]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


class _Guard:
    """Turn gridrun errors into a message on stderr and exit status 1."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, GridrunError):
            fail(exc.message)


guard = _Guard()


# ---------------------------------------------------------------- processes


@app.command()
def master(
    db: Annotated[Path, typer.Option(envvar="GRIDRUN_DB", help="SQLite file.")] = Path(
        "gridrun-data/gridrun.db"
    ),
    http: Annotated[
        str, typer.Option(envvar="GRIDRUN_HTTP", help="HTTP listen address host:port.")
    ] = "127.0.0.1:9092",
    grpc: Annotated[
        str, typer.Option(envvar="GRIDRUN_GRPC", help="gRPC listen address host:port.")
    ] = "127.0.0.1:50051",
    insecure: Annotated[
        bool,
        typer.Option(
            envvar="GRIDRUN_INSECURE", help="Allow listening beyond loopback without auth."
        ),
    ] = False,
    db_sync: Annotated[
        str, typer.Option(envvar="GRIDRUN_DB_SYNC", help="full (fsync each commit) or normal.")
    ] = "full",
    heartbeat_interval: Annotated[
        float, typer.Option(envvar="GRIDRUN_HEARTBEAT_INTERVAL", help="Seconds.")
    ] = 2.0,
    liveness_timeout: Annotated[
        float,
        typer.Option(
            envvar="GRIDRUN_LIVENESS_TIMEOUT",
            help="Seconds of silence before a worker's tasks are lost.",
        ),
    ] = 10.0,
    kill_grace: Annotated[
        float, typer.Option(envvar="GRIDRUN_KILL_GRACE", help="SIGTERM to SIGKILL, seconds.")
    ] = 5.0,
    output_cap: Annotated[
        int, typer.Option(envvar="GRIDRUN_OUTPUT_CAP", help="Bytes kept per stream per task.")
    ] = 1024 * 1024,
    max_body: Annotated[
        int, typer.Option(envvar="GRIDRUN_MAX_BODY", help="Largest HTTP request body, bytes.")
    ] = 16 * 1024 * 1024,
    log_level: LogLevel = "info",
) -> None:
    """Start a master: HTTP API and dashboard, gRPC for workers, SQLite store."""
    from pydantic import ValidationError

    from gridrun.master.app import MasterConfig, run_master

    setup_logging(log_level)
    with guard:
        try:
            http_host, http_port = render.split_address(http)
            grpc_host, grpc_port = render.split_address(grpc)
            config = MasterConfig(
                db=db,
                db_sync=db_sync,
                http_host=http_host,
                http_port=http_port,
                grpc_host=grpc_host,
                grpc_port=grpc_port,
                insecure=insecure,
                heartbeat_interval_s=heartbeat_interval,
                liveness_timeout_s=liveness_timeout,
                kill_grace_s=kill_grace,
                output_cap=output_cap,
                max_body=max_body,
            )
        except (ValidationError, ValueError) as exc:
            fail(f"invalid master settings: {exc}")
        asyncio.run(run_master(config))


@app.command()
def worker(
    master: Annotated[
        str, typer.Option("--master", envvar="GRIDRUN_MASTER", help="Master gRPC host:port.")
    ] = "127.0.0.1:50051",
    slots: Annotated[
        int | None,
        typer.Option(envvar="GRIDRUN_SLOTS", help="Tasks run at once (default: CPU count)."),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(envvar="GRIDRUN_LABELS", help="k=v, repeatable (env: space-separated)."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(envvar="GRIDRUN_DATA_DIR", help="Worker id and outbox live here."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(envvar="GRIDRUN_NAME", help="Worker id on first start.")
    ] = None,
    drain_grace: Annotated[
        float,
        typer.Option(
            envvar="GRIDRUN_DRAIN_GRACE",
            help="On SIGTERM or drain, seconds running"
            " tasks may take to finish before they are stopped.",
        ),
    ] = 30.0,
    log_level: LogLevel = "info",
) -> None:
    """Start a worker that runs what the master assigns. SIGTERM drains it, then it exits."""
    from pydantic import ValidationError

    from gridrun.worker.agent import WorkerConfig, run_worker

    setup_logging(log_level)
    with guard:
        settings: dict[str, Any] = {
            "master": master,
            "labels": parse_labels(label or []),
            "name": name,
            "base_env": dict(os.environ),
            "drain_grace_s": drain_grace,
        }
        if slots is not None:
            settings["slots"] = slots
        if data_dir is not None:
            settings["data_dir"] = data_dir
        try:
            config = WorkerConfig(**settings)
        except ValidationError as exc:
            fail(f"invalid worker settings: {exc}")
        asyncio.run(run_worker(config))


@app.command()
def up(
    workers: Annotated[int, typer.Option(envvar="GRIDRUN_WORKERS", min=0, max=64)] = 2,
    slots: Annotated[
        int | None, typer.Option(envvar="GRIDRUN_SLOTS", help="Slots per worker.")
    ] = None,
    data_dir: Annotated[Path, typer.Option(envvar="GRIDRUN_DATA_DIR")] = Path("gridrun-data"),
    http: Annotated[str, typer.Option(envvar="GRIDRUN_HTTP")] = "127.0.0.1:9092",
    grpc: Annotated[str, typer.Option(envvar="GRIDRUN_GRPC")] = "127.0.0.1:50051",
    log_level: LogLevel = "info",
) -> None:
    """Start a local grid in the foreground: one master and N workers. Ctrl-C stops all."""
    from gridrun.cli.up import Grid

    with guard:
        code = Grid(
            workers=workers,
            slots=slots,
            data_dir=data_dir,
            http=http,
            grpc=grpc,
            log_level=log_level,
        ).run()
    raise typer.Exit(code)


# ---------------------------------------------------------------- tasks


def _submit(
    client: Client,
    command: list[str],
    *,
    shell: bool,
    env: list[str] | None,
    cwd: str | None,
    timeout: float | None,
    priority: int,
    on: list[str] | None,
    name: str | None,
    max_attempts: int,
    retry_delay: float,
    retry_on: list[int] | None,
    queue_timeout: float | None,
    idempotency_key: str | None,
) -> TaskDict:
    if not command:
        fail("give a command, e.g. gridrun submit -- echo hello", 2)
    one_line = len(command) == 1
    retry = {"initial_s": retry_delay, **({"on_exit_codes": retry_on} if retry_on else {})}
    return client.submit(
        cmd=command[0] if one_line else None,
        argv=None if one_line else command,
        shell=shell,
        env=parse_labels(env or []),
        cwd=cwd,
        timeout_s=timeout,
        priority=priority,
        labels=parse_labels(on or []),
        name=name,
        max_attempts=max_attempts,
        retry=retry,
        queue_timeout_s=queue_timeout,
        idempotency_key=idempotency_key,
    )


Command = Annotated[
    list[str] | None,
    typer.Argument(help="The command: one quoted command line, or a program and its arguments."),
]
Shell = Annotated[bool, typer.Option("--shell", help="Run with /bin/sh -c.")]
Env = Annotated[list[str] | None, typer.Option("--env", "-e", help="K=V, repeatable.")]
Cwd = Annotated[str | None, typer.Option("--cwd", help="Working directory on the worker.")]
Timeout = Annotated[float | None, typer.Option("--timeout", help="Seconds before it is killed.")]
Priority = Annotated[int, typer.Option("--priority", "-p", help="Higher runs first.")]
On = Annotated[
    list[str] | None, typer.Option("--on", help="Only on workers labelled k=v (repeatable).")
]
Name = Annotated[str | None, typer.Option("--name", help="A name to find the task by.")]
MaxAttempts = Annotated[
    int, typer.Option("--max-attempts", min=1, max=100, help="Tries in all (default 1).")
]
RetryDelay = Annotated[
    float, typer.Option("--retry-delay", min=0, help="First backoff, seconds; doubles each try.")
]
RetryOn = Annotated[
    list[int] | None,
    typer.Option("--retry-on", help="Retry a failure only for this exit code (repeatable)."),
]
QueueTimeout = Annotated[
    float | None, typer.Option("--queue-timeout", help="Expire if not started within seconds.")
]
IdempotencyKey = Annotated[
    str | None, typer.Option("--idempotency-key", help="Resubmitting it returns the same task.")
]


@app.command(context_settings=COMMAND_CONTEXT)
def submit(
    command: Command = None,
    shell: Shell = False,
    env: Env = None,
    cwd: Cwd = None,
    timeout: Timeout = None,
    priority: Priority = 0,
    on: On = None,
    name: Name = None,
    max_attempts: MaxAttempts = 1,
    retry_delay: RetryDelay = 1.0,
    retry_on: RetryOn = None,
    queue_timeout: QueueTimeout = None,
    idempotency_key: IdempotencyKey = None,
    url: Url = DEFAULT_URL,
    json_out: JsonOut = False,
) -> None:
    """Queue a command and print its task id."""
    with guard, Client(url) as client:
        task = _submit(
            client,
            command or [],
            shell=shell,
            env=env,
            cwd=cwd,
            timeout=timeout,
            priority=priority,
            on=on,
            name=name,
            max_attempts=max_attempts,
            retry_delay=retry_delay,
            retry_on=retry_on,
            queue_timeout=queue_timeout,
            idempotency_key=idempotency_key,
        )
        print_json(task) if json_out else print(task["id"])


@app.command(context_settings=COMMAND_CONTEXT)
def run(
    command: Command = None,
    shell: Shell = False,
    env: Env = None,
    cwd: Cwd = None,
    timeout: Timeout = None,
    priority: Priority = 0,
    on: On = None,
    name: Name = None,
    max_attempts: MaxAttempts = 1,
    retry_delay: RetryDelay = 1.0,
    retry_on: RetryOn = None,
    queue_timeout: QueueTimeout = None,
    idempotency_key: IdempotencyKey = None,
    url: Url = DEFAULT_URL,
) -> None:
    """Run a command on the grid, print its stdout and stderr, exit with its exit code."""
    with guard, Client(url) as client:
        task = _submit(
            client,
            command or [],
            shell=shell,
            env=env,
            cwd=cwd,
            timeout=timeout,
            priority=priority,
            on=on,
            name=name,
            max_attempts=max_attempts,
            retry_delay=retry_delay,
            retry_on=retry_on,
            queue_timeout=queue_timeout,
            idempotency_key=idempotency_key,
        )
        try:
            task = client.wait(task["id"])
        except KeyboardInterrupt:
            client.cancel(task["id"])
            err.print(f"cancelled task {task['id']}")
            raise typer.Exit(130) from None
        sys.stdout.buffer.write(client.output_bytes(task["id"], "stdout"))
        sys.stdout.flush()
        sys.stderr.buffer.write(client.output_bytes(task["id"], "stderr"))
        sys.stderr.flush()
        code = render.exit_status(task)
        plain_exit = task["state"] in ("succeeded", "failed") and task["exit_code"] is not None
        if not plain_exit or task["error"]:  # say why there is no ordinary exit code
            err.print(f"gridrun: task {task['id']} {render.outcome(task)}", highlight=False)
    raise typer.Exit(code)


@app.command("ls")
def list_tasks(
    state: Annotated[
        list[TaskState] | None, typer.Option("--state", "-s", help="Repeatable.")
    ] = None,
    worker: Annotated[str | None, typer.Option("--worker", "-w")] = None,
    name: Name = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 20,
    url: Url = DEFAULT_URL,
    json_out: JsonOut = False,
) -> None:
    """List tasks, newest first."""
    with guard, Client(url) as client:
        tasks, _ = client.list_tasks(
            states=[str(s) for s in state or []], worker=worker, name=name, limit=limit
        )
    if json_out:
        print_json(tasks)
    else:
        Console().print(render.task_table(tasks))


@app.command()
def show(task_id: str, url: Url = DEFAULT_URL, json_out: JsonOut = False) -> None:
    """Show one task: spec, state, result."""
    with guard, Client(url) as client:
        task = client.get(task_id)
    if json_out:
        print_json(task)
    else:
        console = Console()
        console.print(render.task_detail(task))
        if (attempts := render.attempt_table(task)) is not None:
            console.print(attempts)


@app.command()
def logs(
    task_id: str,
    stream: Annotated[str, typer.Option(help="stdout, stderr or both.")] = "both",
    url: Url = DEFAULT_URL,
    json_out: JsonOut = False,
) -> None:
    """Print a task's stored output (stdout to stdout, stderr to stderr)."""
    if stream not in ("stdout", "stderr", "both"):
        fail("--stream must be stdout, stderr or both", 2)
    with guard, Client(url) as client:
        if json_out:
            print_json(client.output(task_id))
            return
        if stream in ("stdout", "both"):
            sys.stdout.buffer.write(client.output_bytes(task_id, "stdout"))
            sys.stdout.flush()
        if stream in ("stderr", "both"):
            sys.stderr.buffer.write(client.output_bytes(task_id, "stderr"))
            sys.stderr.flush()


@app.command()
def cancel(task_id: str, url: Url = DEFAULT_URL, json_out: JsonOut = False) -> None:
    """Cancel a task: a queued one at once, a running one by killing its process group."""
    with guard, Client(url) as client:
        task = client.cancel(task_id)
    if json_out:
        print_json(task)
    elif task["state"] == "cancelled":
        print(f"{task_id} cancelled")
    else:
        print(f"{task_id} is {task['state']}: cancel sent to worker {task['worker_id']}")


@app.command()
def drain(worker_id: str, url: Url = DEFAULT_URL, json_out: JsonOut = False) -> None:
    """Drain a worker: it takes nothing new, finishes its tasks, then exits."""
    with guard, Client(url) as client:
        worker_row = client.drain(worker_id)
    if json_out:
        print_json(worker_row)
    else:
        print(f"{worker_id} is draining: it finishes its running tasks, then exits")


@app.command()
def workers(url: Url = DEFAULT_URL, json_out: JsonOut = False) -> None:
    """List workers: state, slots, running tasks, labels."""
    with guard, Client(url) as client:
        rows = client.workers()
    if json_out:
        print_json(rows)
    else:
        Console().print(render.worker_table(rows))


def main() -> None:
    app()
