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
