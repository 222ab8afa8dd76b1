"""`gridrun ls`, `show` and `top` on a real terminal (a pty) with tasks in the states a new user
meets first (`--after` makes `waiting` and `skipped` ones), and with task data written to
attack whoever reads it: each is shown, nothing crashes, nothing reaches the terminal raw."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import eventually
from tests.system.conftest import SystemGrid
from tests.system.terminal import Terminal

pytestmark = [pytest.mark.system]

# a title change, a screen clear and a forged line, in a task's name and argv
HOSTILE = "x\x1b]0;pwned\x07\x1b[2J\nforged-line"


def on_pty(grid: SystemGrid, *args: str) -> Terminal:
    env = {**grid.env, "GRIDRUN_URL": grid.url, "COLUMNS": "160"}
    return Terminal([sys.executable, "-m", "gridrun", *args], env, str(grid.tmp))


def test_ls_show_and_top_show_waiting_and_skipped_tasks_in_a_terminal(
    system_grid: SystemGrid,
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=2)
    failing = system_grid.cli("submit", "--", "false").stdout.strip()
    skipped = system_grid.cli("submit", "--after", failing, "--", "true").stdout.strip()
    blocker = system_grid.cli("submit", "--", "sleep", "600").stdout.strip()
    waiting = system_grid.cli("submit", "--after", blocker, "--", "true").stdout.strip()
    eventually(lambda: system_grid.task(skipped)["state"] == "skipped", 30)
    assert system_grid.task(waiting)["state"] == "waiting"

    term = on_pty(system_grid, "ls")
    text = term.read_until(r"skipped")
    assert term.close() == 0, text
    assert "waiting" in text
    assert "Traceback" not in text
    for task_id, state in ((waiting, "waiting"), (skipped, "skipped")):
        term = on_pty(system_grid, "show", task_id)
        text = term.read_until(rf"state +{state}")
        assert term.close() == 0, text
    term = on_pty(system_grid, "top", "--interval", "0.3")
    try:
        text = term.read_until(r"waiting 1")
        text = term.read_until(r"skipped 1")
        term.interrupt()
    finally:
        code = term.close()
    assert code == 0, text
    assert "Traceback" not in text


def test_escape_sequences_in_task_data_are_shown_escaped_by_ls_show_top_and_run_all(
    system_grid: SystemGrid,
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=1)
    task_id = system_grid.cli("submit", "--name", HOSTILE, "--", "echo", HOSTILE).stdout.strip()
    eventually(lambda: system_grid.task(task_id)["state"] == "succeeded", 30)
    for args, until in (
        (("ls",), r"succeeded"),
        (("show", task_id), r"finished"),
        (("top", "--interval", "0.3"), r"succeeded"),
    ):
        term = on_pty(system_grid, *args)
        try:
            text = term.read_until(until)
            text = term.read_until(r"forged-line")
            if args[0] == "top":
                term.interrupt()
        finally:
            term.close()
        assert "\\x1b]0;pwned" in text, text  # shown, escaped
        assert b"\x1b]0;" not in term.raw  # no title change reached the terminal
        assert b"\x1b[2J" not in term.raw
        assert not any(line.startswith("forged-line") for line in text.splitlines())
    piped = system_grid.cli("ls")  # into a pipe: tab-separated, one line a task
    assert "\x1b" not in piped.stdout
    assert len(piped.stdout.strip().split("\n")) == 2
