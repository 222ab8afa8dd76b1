"""Every command that makes a task takes the same task options (declared once)."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from gridrun.cli.main import app
from gridrun.errors import InvalidSpec
from gridrun.forms import parse_duration, parse_size


def _options(*path: str) -> set[str]:
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # a group's subcommands, by name
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


def test_every_task_option_of_submit_exists_on_run_and_schedule_add() -> None:
    own = {"--file", "--no-wait", "--json", "--url", "--all", "--cron", "--help", "--array",
           "--each-line", "--from-json", "--wait"}  # fmt: skip
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


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("12h", 43_200), ("14d", 1_209_600), ("90", 90), ("1.5h", 5400)],
)
def test_durations_read_as_people_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [("500MiB", 500 << 20), ("10GiB", 10 << 30), ("64k", 64 << 10), ("1G", 1 << 30), ("99", 99)],
)
def test_sizes_read_in_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["a week", "5 minutes", "-1d", "", "3w"])
def test_a_bad_duration_says_how_to_write_one(bad: str) -> None:
    with pytest.raises(InvalidSpec, match=r"e\.g\. 30s, 5m, 12h, 14d"):
        parse_duration(bad, "--retain")


@pytest.mark.parametrize("bad", ["lots", "10 GB of it", "-5M", ""])
def test_a_bad_size_says_how_to_write_one(bad: str) -> None:
    with pytest.raises(InvalidSpec, match=r"e\.g\. 500MiB, 10GiB"):
        parse_size(bad, "--output-budget")
