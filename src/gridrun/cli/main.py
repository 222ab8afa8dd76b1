"""The `gridrun` command (Typer): start the pieces, submit and inspect tasks.

Every option has a GRIDRUN_* environment variable. Client commands (`cli.tasks`) talk to the
master through `gridrun.client`; `master` (`cli.master_process`), `worker`
(`cli.worker_process`) and `up` (`cli.up`) start processes.
"""

from __future__ import annotations

# `gridrun --help` lists the commands as they are defined: starting processes first
# isort: off
from gridrun.cli import master_process, worker_process, up
from gridrun.cli import tasks, files, fleet, jobs, retention, quotas, schedules, security, alloc

# isort: on
import types
import typing
from typing import Any

import typer

from gridrun.cli.common import app
from gridrun.cli.examples import add_examples

__all__ = [  # noqa: RUF022
    "app", "main", "master_process", "worker_process", "up", "tasks", "files", "fleet", "jobs",
    "retention", "quotas", "schedules", "security", "alloc",
]  # fmt: skip


def plain_metavars(command: Any) -> None:
    """Every option's value as a short plain word in --help (N, NUMBER, PATH, TEXT, a|b),
    where Typer prints the Python type (`<list[str]>`, `<float range>`): at 80 columns that
    column took a third of the width. (Typer carries its own click and describes a type by
    its `type_descriptor`: read by duck type.)"""
    for param in command.params:
        described = getattr(param, "type_descriptor", None)
        if described is None or param.metavar is not None:
            continue
        if param.param_type_name == "argument":
            param.metavar = (param.name or "").upper()
        elif not param.is_flag:
            param.metavar = _metavar(described)
            if len(param.metavar) > LONGEST_METAVAR:  # a long list of choices: in the help
                choices = param.metavar.replace("|", ", ")
                param.help = f"{param.help or ''} One of: {choices}.".strip()
                param.metavar = (param.name or "value").upper()
    for sub in getattr(command, "commands", {}).values():
        plain_metavars(sub)


LONGEST_METAVAR = 24


def _metavar(described: Any) -> str:
    choices = described.choices
    if choices is not None:
        return "|".join(str(getattr(c, "value", c)) for c in choices)
    if described.is_path or described.is_file:
        return "PATH"
    kind = described.annotation
    if described.is_list:
        (kind,) = typing.get_args(kind)
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    return {int: "N", float: "NUMBER", bool: "BOOL"}.get(kind, "TEXT")


def main() -> None:
    command = typer.main.get_command(app)
    plain_metavars(command)
    add_examples(command)
    command(prog_name="gridrun")
