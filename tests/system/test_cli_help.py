"""`--help` reads at 80 columns (issue 33, item 7): plain metavars, descriptions with room,
text shown as written (no markup eaten), and an Examples section on the commands people use."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
import typer

from gridrun.cli.main import app

pytestmark = [pytest.mark.system]

EXAMPLED = ("up", "master", "worker", "submit", "run", "ls", "logs", "top")


def _help(*path: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "gridrun", *path, "--help"], capture_output=True, text=True,
        env={**os.environ, "COLUMNS": "80", "TERM": "dumb"}, timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_command_help_fits_80_columns_with_plain_metavars() -> None:
    command: Any = typer.main.get_command(app)
    paths = [
        (name, *sub) for name, group in command.commands.items()
        for sub in ([(s,) for s in getattr(group, "commands", {})] or [()])
    ]  # fmt: skip
    assert ("quota", "set") in paths
    for path in paths:
        name = " ".join(path)
        text = _help(*path)
        for line in text.splitlines():
            assert len(line) <= 80, (name, line)
            if line.lstrip().startswith("-"):  # an option's line: its value a plain word
                assert "<list" not in line, (name, line)
                assert "range>" not in line, (name, line)


def test_help_shows_text_as_written_and_examples() -> None:
    assert "[[tokens]]" in _help("master")  # (it was eaten as markup)
    for name in EXAMPLED:
        text = _help(name)
        lines = [line.strip() for line in text.splitlines()]
        assert "Examples:" in lines, name
        examples = "\n".join(lines[lines.index("Examples:") :])
        assert f"gridrun {name}" in examples or "| gridrun" in examples, name
