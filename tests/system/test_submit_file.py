"""`gridrun submit --file`: batches of commands and a live progress bar, read from a real
terminal (a pty), as a user sees it."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A process on a pty; what it has written so far, without colour codes."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: str) -> None:
        self.fd, child = pty.openpty()
        self.proc = subprocess.Popen(
            args, stdin=child, stdout=child, stderr=child, env=env, cwd=cwd, close_fds=True
        )
        os.close(child)
        self.text = ""

    def read_until(self, pattern: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text):
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} in {self.text[-2000:]!r}"
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # the process ended and closed the pty
                    chunk = b""
                if not chunk and self.proc.poll() is not None:
                    assert re.search(pattern, self.text), self.text[-2000:]
                self.text += ANSI.sub("", chunk.decode(errors="replace"))
        return self.text

    def close(self) -> int:
        try:
            code = self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            os.close(self.fd)
        return code


def test_submit_file_shows_progress_until_every_task_has_ended(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=3)
    gate = system_grid.tmp / "gate"
    commands = system_grid.tmp / "commands.txt"
    commands.write_text(
        f"# nightly jobs\necho one\n\nexit 3\nwhile [ ! -e {gate} ]; do sleep 0.05; done\n"
    )
    env = {**system_grid.env, "GRIDRUN_URL": system_grid.url, "COLUMNS": "120"}
    term = Terminal(
        [sys.executable, "-m", "gridrun", "submit", "--file", str(commands), "--shell"],
        env,
        str(system_grid.tmp),
    )
    try:
        term.read_until(r"commands\.txt .* 2/3 +1 ok 1 failed")  # live, while one still runs
        gate.touch()
        term.read_until(r"3/3 +2 ok 1 failed")
        term.read_until(r"3 tasks from .*commands\.txt: 1 failed, 2 succeeded")
    finally:
        code = term.close()
    assert code == 1  # not every task succeeded
    tasks = system_grid.cli_json("ls", "--name", "commands.txt")
    assert sorted(t["cmd"] for t in tasks) == sorted(
        ["echo one", "exit 3", f"while [ ! -e {gate} ]; do sleep 0.05; done"]
    )


def test_submit_file_no_wait_and_idempotent_resubmission(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    commands = system_grid.tmp / "c.txt"
    commands.write_text("true\nfalse\n")
    first = system_grid.cli("submit", "-f", str(commands), "--no-wait", "--idempotency-key", "k")
    assert first.returncode == 0, first.stderr
    again = system_grid.cli("submit", "-f", str(commands), "--no-wait", "--idempotency-key", "k")
    assert again.stdout == first.stdout
    assert len(first.stdout.split()) == 2
    empty = system_grid.tmp / "empty.txt"
    empty.write_text("# nothing\n\n")
    refused = system_grid.cli("submit", "--file", str(empty))
    assert refused.returncode == 2
    assert "has no commands" in refused.stderr
