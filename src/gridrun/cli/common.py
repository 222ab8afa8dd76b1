"""What every `gridrun` command shares: the Typer app, common options, error handling."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from gridrun.errors import GridrunError

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
