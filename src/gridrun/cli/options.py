"""The options every command that makes a task takes (`submit`, `run`, `schedule add`),
declared once: each is a field of `TaskOptions` annotated with its Typer option,
`task_options` adds them all to a command and hands it one `TaskOptions`, and `task_body`
turns that into what POST /v1/tasks takes."""

from __future__ import annotations

import base64
import dataclasses
import functools
import inspect
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

from gridrun.cli.common import fail
from gridrun.cli.files import LocalInput, inputs_body, local_inputs, ship_inputs
from gridrun.client import Client
from gridrun.errors import InvalidSpec
from gridrun.forms import parse_duration, parse_labels
from gridrun.model import Placement
from gridrun.spec import MAX_SCRIPT_BYTES, MAX_STDIN_BYTES


def task_body(command: list[str], o: TaskOptions) -> dict[str, Any]:
    """One task as POST /v1/tasks takes it, from the CLI's options."""
    # one command line, or a program and its arguments (with a script: its arguments)
    one_line = len(command) == 1 and o.script is None
    secrets = dict(read_env_file(o.secret_env_file)) if o.secret_env_file is not None else {}
    secrets.update(parse_labels(o.secret_env or []))
    retry = {"initial_s": o.retry_delay, **({"on_exit_codes": o.retry_on} if o.retry_on else {})}
    return dict(
        cmd=command[0] if one_line else None,
        argv=None if one_line else command,
        shell=o.shell,
        env=parse_labels(o.env or []),
        cwd=o.cwd,
        timeout_s=o.timeout,
        priority=o.priority,
        on=", ".join(o.on) if o.on else None,
        labels=parse_labels(o.label or []),
        name=o.name,
        max_attempts=o.max_attempts,
        retry=retry,
        queue_timeout_s=o.queue_timeout,
        idempotency_key=o.idempotency_key,
        cpu=o.cpu,
        memory_mb=o.memory_mb,
        gpus=o.gpus,
        after=o.after or [],
        task_class=o.task_class,
        placement=str(o.placement),
        **({"secret_env": secrets} if secrets else {}),
        **({"queue": o.queue} if o.queue else {}),
        **parse_concurrency(o.concurrency),
        **({"retain_s": _duration(o.retain, "--retain")} if o.retain else {}),
        **({"stdin_base64": _base64(read_stdin(o.stdin))} if o.stdin else {}),
        **({"script_base64": _base64(read_script(o.script))} if o.script else {}),
        **({"inputs": inputs_body(o.local_inputs())} if o.input or o.input_dir else {}),
        **({"collect": list(o.collect)} if o.collect else {}),
    )


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@functools.lru_cache(maxsize=4)  # read once for all the lines of a --file
def read_stdin(source: str) -> bytes:
    """The bytes a task is to read on its stdin: a file, or (`-`) this command's own stdin;
    at most MAX_STDIN_BYTES, else a clear error before anything is submitted."""
    data = _read_at_most(source, MAX_STDIN_BYTES, "--stdin")
    if len(data) > MAX_STDIN_BYTES:
        what = "this command's stdin" if source == "-" else source
        fail(
            f"{what} is larger than a task's stdin may be ({MAX_STDIN_BYTES:,} bytes): ship"
            " it as a file the task reads instead",
            2,
        )
    return data


@functools.lru_cache(maxsize=4)
def read_script(path: Path) -> bytes:
    data = _read_at_most(str(path), MAX_SCRIPT_BYTES, "--script")
    if not data:
        fail(f"--script {path} is empty", 2)
    if len(data) > MAX_SCRIPT_BYTES:
        fail(f"--script {path} is larger than a script may be ({MAX_SCRIPT_BYTES:,} bytes)", 2)
    return data


def _read_at_most(source: str, limit: int, flag: str) -> bytes:
    """Up to `limit` + 1 bytes of a file or (`-`) of this command's stdin: one more than
    allowed says it is too large without reading it all."""
    try:
        if source == "-":
            return sys.stdin.buffer.read(limit + 1)
        with open(source, "rb") as file:
            return file.read(limit + 1)
    except OSError as exc:
        fail(f"cannot read {flag} {source}: {exc.strerror or exc}", 2)


def stdin_is_given() -> bool:
    """Whether this command's stdin carries something to pass on: a pipe or a file (not a
    terminal, not /dev/null), as `ssh host cmd` reads its own."""
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False  # closed
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def _duration(text: str, what: str) -> float:
    try:
        return parse_duration(text, what)
    except InvalidSpec as exc:
        fail(exc.message, 2)


def parse_concurrency(given: str | None) -> dict[str, Any]:
    """--concurrency KEY=N as the API's concurrency_key and concurrency_limit."""
    if given is None:
        return {}
    key, sep, limit = given.rpartition("=")
    if not sep or not key or not limit.isdigit() or int(limit) < 1:
        fail(f"--concurrency {given!r} must look like KEY=N (N a number above 0)", 2)
    return {"concurrency_key": key, "concurrency_limit": int(limit)}


@functools.lru_cache(maxsize=4)  # read once for all the lines of a --file
def read_env_file(path: Path) -> dict[str, str]:
    """NAME=VALUE lines (blank lines and # comments skipped, `export ` and one pair of
    surrounding quotes allowed), as in a .env file. Errors name the line, never a value."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}", 2)
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name = name.strip()
        if not sep or not name or any(c.isspace() for c in name):
            fail(f"{path}:{number}: expected NAME=VALUE", 2)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


Command = Annotated[
    list[str] | None,
    typer.Argument(help="The command: one quoted command line, or a program and its arguments."),
]
Name = Annotated[str | None, typer.Option("--name", help="A name to find the task by.")]


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """What a user can say about a task on the command line: one field per option, its flag
    and help on the field (`task_options` gives a command all of them). Adding an option is
    this field and its line in `task_body`."""

    shell: Annotated[bool, typer.Option("--shell", help="Run with /bin/sh -c.")] = False
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="K=V, repeatable.")] = None
    secret_env: Annotated[
        list[str] | None,
        typer.Option(
            "--secret-env",
            help="K=V for the process that is never shown (names only) and is stored sealed;"
            " repeatable. A command line is visible to other users of this machine: prefer"
            " --secret-env-file.",
        ),
    ] = None
    secret_env_file: Annotated[
        Path | None,
        typer.Option("--secret-env-file", help="A file of NAME=VALUE lines, each a --secret-env."),
    ] = None
    cwd: Annotated[str | None, typer.Option("--cwd", help="Working directory on the worker.")] = (
        None
    )
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds before it is killed.")
    ] = None
    priority: Annotated[int, typer.Option("--priority", "-p", help="Higher runs first.")] = 0
    on: Annotated[
        list[str] | None,
        typer.Option(
            "--on",
            help="Only on workers whose labels match: k=v, k!=v, 'k in (a,b)', 'k notin (a,b)',"
            " k (has it), !k (has it not). Comma-separated or repeated: all must hold.",
        ),
    ] = None
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            metavar="K=V",
            help="A label to find the task by (`ls --label K=V`); it also runs only on"
            " workers labelled K=V, as --on K=V does. Repeatable.",
        ),
    ] = None
    name: Name = None
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", min=1, max=100, help="Tries in all (default 1).")
    ] = 1
    retry_delay: Annotated[
        float,
        typer.Option("--retry-delay", min=0, help="First backoff, seconds; doubles each try."),
    ] = 1.0
    retry_on: Annotated[
        list[int] | None,
        typer.Option("--retry-on", help="Retry a failure only for this exit code (repeatable)."),
    ] = None
    queue_timeout: Annotated[
        float | None,
        typer.Option("--queue-timeout", help="Expire if not started within seconds."),
    ] = None
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="Resubmitting it returns the same task."),
    ] = None
    cpu: Annotated[float, typer.Option("--cpu", min=0, help="CPU cores it needs free.")] = 0
    memory_mb: Annotated[
        int, typer.Option("--memory-mb", min=0, help="Memory (MiB) it needs free.")
    ] = 0
    gpus: Annotated[
        int,
        typer.Option("--gpus", min=0, help="GPUs it needs (indices in CUDA_VISIBLE_DEVICES)."),
    ] = 0
    after: Annotated[
        list[str] | None,
        typer.Option("--after", help="Run once this task has succeeded (repeatable; task id)."),
    ] = None
    task_class: Annotated[
        str | None,
        typer.Option("--class", help="Its class (workers may cap a class: --max-tasks CLASS=N)."),
    ] = None
    placement: Annotated[
        Placement,
        typer.Option(
            "--placement",
            help="spread: least loaded worker (default); pack: fill a worker before the next.",
        ),
    ] = Placement.SPREAD
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue", help="A queue name, for quotas and for finding tasks (default: default)."
        ),
    ] = None
    concurrency: Annotated[
        str | None,
        typer.Option(
            "--concurrency",
            help="KEY=N: at most N tasks with this key run at once across the whole grid.",
        ),
    ] = None
    retain: Annotated[
        str | None,
        typer.Option(
            "--retain", help="Keep it this long after it ends (30d), whatever the grid's rule."
        ),
    ] = None
    script: Annotated[
        Path | None,
        typer.Option(
            "--script",
            help="Ship this local script and run it on the worker, the command's words its"
            " arguments (its #! line names the interpreter, else /bin/sh; at most 1 MiB; a"
            " worker runs it only with --allow-shell).",
        ),
    ] = None
    stdin: Annotated[
        str | None,
        typer.Option(
            "--stdin",
            metavar="FILE",
            help="Give the task this file on its standard input (- : this command's own;"
            " at most 1 MiB, stored with the task, the same for every attempt). `run` passes"
            " on a pipe or file it is given by itself.",
        ),
    ] = None

    input: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            metavar="LOCAL[:NAME]",
            help="Send this local file with the task: written into each attempt's own"
            " working directory as NAME (default: its name), its mode kept (repeatable;"
            " uploaded once, at most the master's --max-input in all).",
        ),
    ] = None
    input_dir: Annotated[
        list[str] | None,
        typer.Option(
            "--input-dir",
            metavar="DIR[:NAME]",
            help="Send the files under this local directory, as the directory NAME (default:"
            " its name) in the working directory (repeatable; no symlinks).",
        ),
    ] = None
    collect: Annotated[
        list[str] | None,
        typer.Option(
            "--collect",
            metavar="GLOB",
            help="After each attempt, send back the files this glob matches in the working"
            " directory (out/*.csv, **/*.log; repeatable): gridrun files TASK, gridrun cp.",
        ),
    ] = None

    def local_inputs(self) -> list[LocalInput]:
        return local_inputs(self.input, self.input_dir)

    def ship(self, client: Client) -> None:
        """Upload the task's inputs the master does not hold yet (before it is submitted)."""
        if self.input or self.input_dir:
            ship_inputs(client, self.local_inputs())

    def body(self, command: list[str], **overrides: Any) -> dict[str, Any]:
        """The task as POST /v1/tasks takes it."""
        return task_body(command, dataclasses.replace(self, **overrides))


NO_OPTIONS = TaskOptions()
F = TypeVar("F", bound=Callable[..., Any])


def task_options(command: F) -> F:
    """Give a Typer command every task option, in place of its `options: TaskOptions`
    parameter, and call it with them gathered in one TaskOptions (as rq's shared_options
    does for click): one declaration for every command that makes a task."""
    hints = get_type_hints(command, include_extras=True)
    flags = get_type_hints(TaskOptions, include_extras=True)  # each field's Typer option
    fields = dataclasses.fields(TaskOptions)
    params: list[inspect.Parameter] = []
    for param in inspect.signature(command).parameters.values():
        if param.name != "options":
            params.append(param.replace(annotation=hints[param.name]))
            continue
        for f in fields:
            params.append(
                inspect.Parameter(
                    f.name,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=f.default,
                    annotation=flags[f.name],
                )
            )

    @functools.wraps(command)
    def with_options(*args: Any, **kwargs: Any) -> Any:
        given = {f.name: kwargs.pop(f.name) for f in fields if f.name in kwargs}
        return command(*args, options=TaskOptions(**given), **kwargs)

    with_options.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        params, return_annotation=hints.get("return", inspect.Signature.empty)
    )
    with_options.__annotations__ = {p.name: p.annotation for p in params}
    return with_options  # type: ignore[return-value]
