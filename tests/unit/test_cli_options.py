"""Every command that makes a task takes the same task options (declared once)."""

from __future__ import annotations

from typing import Any

import typer

from gridrun.cli.main import app


def _options(*path: str) -> set[str]:
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # a group's subcommands, by name
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


def test_every_task_option_of_submit_exists_on_run_and_schedule_add() -> None:
    own = {"--file", "--no-wait", "--json", "--url", "--all", "--cron", "--help"}
    submit = _options("submit") - own
    assert {"--retry-delay", "--retry-on", "--queue-timeout", "--idempotency-key", "--after",
            "--secret-env", "--secret-env-file", "--placement", "--class"} <= submit  # fmt: skip
    for path in (("run",), ("schedule", "add")):
        missing = submit - _options(*path)
        assert not missing, (path, sorted(missing))


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


def test_each_short_flag_means_one_thing_across_every_command() -> None:
    """`-n` is a count and `-f` is follow wherever they appear (not also an interval or a
    file): a user who learnt a flag on one command can trust it on the next."""
    meaning: dict[str, set[str]] = {}
    for _, command in _commands(typer.main.get_command(app)):
        for param in getattr(command, "params", []):
            longs = [opt for opt in param.opts if opt.startswith("--")]
            for short in (opt for opt in param.opts if len(opt) == 2 and opt[0] == "-"):
                meaning.setdefault(short, set()).update(longs or [param.name or "?"])
    mixed = {short: sorted(longs) for short, longs in meaning.items() if len(longs) > 1}
    assert not mixed, mixed
