"""What every `gridrun` command shares: the Typer app, common options, error handling."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from gridrun import logs
from gridrun.client import Client
from gridrun.errors import GridrunError, Unauthorized
from gridrun.text import visible

app = typer.Typer(
    name="gridrun",
    help="Run commands on a fleet of workers, durably. Start with `gridrun up`.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion: bash, zsh, fish
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(given: bool) -> None:
    if given:
        from gridrun import __version__

        print(f"gridrun {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Run commands on a fleet of workers, durably. Start with `gridrun up`."""


err = Console(stderr=True)
COMMAND_CONTEXT = {"allow_interspersed_args": False}

Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="GRIDRUN_URL",
        help="The master's HTTP(S) address (default: the config file's url, else"
        " http://127.0.0.1:9092). The token and CA come from GRIDRUN_TOKEN and GRIDRUN_CA or"
        " the config file (~/.config/gridrun/config.toml).",
        show_default=False,
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LogLevel = Annotated[
    str, typer.Option("--log-level", envvar="GRIDRUN_LOG_LEVEL", help="debug, info, warning")
]
LogFormat = Annotated[
    str,
    typer.Option(
        "--log-format",
        envvar="GRIDRUN_LOG_FORMAT",
        help="text, or json: one object per line with worker_id / task_id where they apply.",
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    """The message on one line of stderr (not wrapped: a log or a pipe keeps it whole); under
    --json, a JSON object ({"error": message, "exit": code}) that a script can parse."""
    if "--json" in sys.argv[1:]:
        sys.stderr.write(json.dumps({"error": message, "exit": code}) + "\n")
    else:
        err.print(
            f"[bold red]error:[/] {escape(visible(message))}", highlight=False, soft_wrap=True
        )
    raise typer.Exit(code)


def say(message: str) -> None:
    """A line on stderr that may carry task data (names, errors, worker ids): shown as it is,
    its control characters escaped and its brackets not read as markup."""
    err.print(visible(message), markup=False, highlight=False, soft_wrap=True)


def setup_logging(level: str, fmt: str = "text") -> None:
    try:
        logs.setup(level, fmt)
    except ValueError as exc:
        fail(str(exc), 2)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


class _Guard:
    """Turn gridrun errors into a message on stderr and exit status 1."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, Unauthorized):
            fail(
                f"{exc.message}: set GRIDRUN_TOKEN (or `token` in ~/.config/gridrun/config.toml)"
                " to a token the master knows (`gridrun token create` makes one)"
            )
        if isinstance(exc, GridrunError):
            fail(exc.message)


guard = _Guard()


def connect(url: str | None) -> Client:
    """A client for the CLI's commands; token and CA from the environment or config file."""
    client = Client(url)
    for warning in client.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    return client
