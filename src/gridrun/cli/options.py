"""The options every command that makes a task takes (`submit`, `run`, `schedule add`),
declared once: each is an `Annotated` Typer option, `task_options` adds them all to a command
and hands it one `TaskOptions`, and `task_body` turns that into what POST /v1/tasks takes."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

from gridrun.cli.common import fail
from gridrun.errors import InvalidSpec
from gridrun.model import Placement
from gridrun.spec import parse_duration, parse_labels


def task_body(
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
    cpu: float = 0,
    memory_mb: int = 0,
    gpus: int = 0,
    after: list[str] | None = None,
    task_class: str | None = None,
    placement: str = "spread",
    secret_env: list[str] | None = None,
    secret_env_file: Path | None = None,
    queue: str | None = None,
    concurrency: str | None = None,
    retain: str | None = None,
) -> dict[str, Any]:
    """One task as POST /v1/tasks takes it, from the CLI's options."""
    one_line = len(command) == 1
    secrets = dict(read_env_file(secret_env_file)) if secret_env_file is not None else {}
    secrets.update(parse_labels(secret_env or []))
    retry = {"initial_s": retry_delay, **({"on_exit_codes": retry_on} if retry_on else {})}
    return dict(
        cmd=command[0] if one_line else None,
        argv=None if one_line else command,
        shell=shell,
        env=parse_labels(env or []),
        cwd=cwd,
        timeout_s=timeout,
        priority=priority,
        on=", ".join(on) if on else None,
        name=name,
        max_attempts=max_attempts,
        retry=retry,
        queue_timeout_s=queue_timeout,
        idempotency_key=idempotency_key,
        cpu=cpu,
        memory_mb=memory_mb,
        gpus=gpus,
        after=after or [],
        task_class=task_class,
        placement=str(placement),
        **({"secret_env": secrets} if secrets else {}),
        **({"queue": queue} if queue else {}),
        **parse_concurrency(concurrency),
        **({"retain_s": _duration(retain, "--retain")} if retain else {}),
    )


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
Shell = Annotated[bool, typer.Option("--shell", help="Run with /bin/sh -c.")]
Env = Annotated[list[str] | None, typer.Option("--env", "-e", help="K=V, repeatable.")]
SecretEnv = Annotated[
    list[str] | None,
    typer.Option(
        "--secret-env",
        help="K=V for the process that is never shown (names only) and is stored sealed;"
        " repeatable. A command line is visible to other users of this machine: prefer"
        " --secret-env-file.",
    ),
]
SecretEnvFile = Annotated[
    Path | None,
    typer.Option("--secret-env-file", help="A file of NAME=VALUE lines, each a --secret-env."),
]
Cwd = Annotated[str | None, typer.Option("--cwd", help="Working directory on the worker.")]
Timeout = Annotated[float | None, typer.Option("--timeout", help="Seconds before it is killed.")]
Priority = Annotated[int, typer.Option("--priority", "-p", help="Higher runs first.")]
On = Annotated[
    list[str] | None,
    typer.Option(
        "--on",
        help="Only on workers whose labels match: k=v, k!=v, 'k in (a,b)', 'k notin (a,b)',"
        " k (has it), !k (has it not). Comma-separated or repeated: all must hold.",
    ),
]
Cpu = Annotated[float, typer.Option("--cpu", min=0, help="CPU cores it needs free.")]
MemoryMb = Annotated[int, typer.Option("--memory-mb", min=0, help="Memory (MiB) it needs free.")]
After = Annotated[
    list[str] | None,
    typer.Option("--after", help="Run once this task has succeeded (repeatable; task id)."),
]
TaskClass = Annotated[
    str | None,
    typer.Option("--class", help="Its class (workers may cap a class: --max-tasks CLASS=N)."),
]


PlacementOption = Annotated[
    Placement,
    typer.Option(
        "--placement",
        help="spread: least loaded worker (default); pack: fill a worker before the next.",
    ),
]
Gpus = Annotated[
    int, typer.Option("--gpus", min=0, help="GPUs it needs (indices in CUDA_VISIBLE_DEVICES).")
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
Retain = Annotated[
    str | None,
    typer.Option(
        "--retain", help="Keep it this long after it ends (30d), whatever the grid's rule."
    ),
]
Queue = Annotated[
    str | None,
    typer.Option(
        "--queue", help="A queue name, for quotas and for finding tasks (default: default)."
    ),
]
ConcurrencyOption = Annotated[
    str | None,
    typer.Option(
        "--concurrency",
        help="KEY=N: at most N tasks with this key run at once across the whole grid.",
    ),
]
IdempotencyKey = Annotated[
    str | None, typer.Option("--idempotency-key", help="Resubmitting it returns the same task.")
]


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """What a user can say about a task on the command line (one field per option)."""

    shell: bool = False
    env: list[str] | None = None
    secret_env: list[str] | None = None
    secret_env_file: Path | None = None
    cwd: str | None = None
    timeout: float | None = None
    priority: int = 0
    on: list[str] | None = None
    name: str | None = None
    max_attempts: int = 1
    retry_delay: float = 1.0
    retry_on: list[int] | None = None
    queue_timeout: float | None = None
    idempotency_key: str | None = None
    cpu: float = 0
    memory_mb: int = 0
    gpus: int = 0
    after: list[str] | None = None
    task_class: str | None = None
    placement: Placement = Placement.SPREAD
    queue: str | None = None
    concurrency: str | None = None
    retain: str | None = None

    def body(self, command: list[str], **overrides: Any) -> dict[str, Any]:
        """The task as POST /v1/tasks takes it."""
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return task_body(command, **{**given, **overrides})


# the Typer option of each field of TaskOptions
OPTION_TYPES: dict[str, Any] = {
    "shell": Shell, "env": Env, "secret_env": SecretEnv, "secret_env_file": SecretEnvFile,
    "cwd": Cwd, "timeout": Timeout, "priority": Priority, "on": On, "name": Name,
    "max_attempts": MaxAttempts, "retry_delay": RetryDelay, "retry_on": RetryOn,
    "queue_timeout": QueueTimeout, "idempotency_key": IdempotencyKey, "cpu": Cpu,
    "memory_mb": MemoryMb, "gpus": Gpus, "after": After, "task_class": TaskClass,
    "placement": PlacementOption, "queue": Queue, "concurrency": ConcurrencyOption,
    "retain": Retain,
}  # fmt: skip
NO_OPTIONS = TaskOptions()
F = TypeVar("F", bound=Callable[..., Any])


def task_options(command: F) -> F:
    """Give a Typer command every task option, in place of its `options: TaskOptions`
    parameter, and call it with them gathered in one TaskOptions (as rq's shared_options
    does for click): one declaration for every command that makes a task."""
    hints = get_type_hints(command, include_extras=True)
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
                    annotation=OPTION_TYPES[f.name],
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
