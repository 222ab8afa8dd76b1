"""`gridrun run` as people use it like ssh: the exit statuses it documents, and a word on stderr
when the task cannot start, instead of silence."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system]


def test_run_exits_124_when_the_task_times_out_as_gnu_timeout_does(
    system_grid: SystemGrid,
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=1)
    result = system_grid.cli("run", "--timeout", "1", "--", "sleep", "5")
    assert result.returncode == 124, (result.returncode, result.stderr)  # it was 143
    assert "timed_out" in result.stderr


def test_run_says_why_a_task_waits_and_again_when_the_reason_changes(
    system_grid: SystemGrid,
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=1, labels=("zone=a",))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridrun", "run", "--on", "zone=b", "--", "true"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**system_grid.env, "GRIDRUN_URL": system_grid.url},
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        line = ""
        while "is queued" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
        assert "is queued: " in line, line  # before, it waited without a word
        assert "zone" in line  # the reason the master gave: no worker has zone=b
        assert proc.poll() is None  # and it still waits for the task
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_top_into_a_pipe_prints_a_whole_frame_each_interval(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=1)
    system_grid.cli("submit", "--name", "piped-one", "--", "true")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridrun", "top", "--interval", "0.3"],
        stdout=subprocess.PIPE,
        text=True,
        env={**system_grid.env, "GRIDRUN_URL": system_grid.url},
    )
    try:
        assert proc.stdout is not None
        frames, seen = 0, []
        deadline = time.monotonic() + 30
        while frames < 2 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen.append(line)
            frames += line.startswith("gridrun http")  # each frame's first line
        assert frames == 2, "".join(seen)  # it printed nothing into a pipe before
        assert any("piped-one" in line for line in seen)
        assert not any("\x1b" in line for line in seen)  # no cursor movement, no colour
    finally:
        proc.terminate()
        proc.wait(10)


def test_errors_under_json_are_json(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    missing = system_grid.cli("show", "no-such-task", "--json")
    assert missing.returncode == 1
    said = json.loads(missing.stderr)  # it was "error: ..." text
    assert said["exit"] == 1
    assert "no-such-task" in said["error"]
    plain = system_grid.cli("show", "no-such-task")
    assert plain.stderr.startswith("error: ")


def test_run_passes_its_stdin_on_as_ssh_does(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=1, run_as=None)  # (the worker's default identity)
    piped = system_grid.cli("run", "--", "wc", "-l", stdin="a\nb\n")
    assert (piped.returncode, piped.stdout.strip()) == (0, "2"), piped.stderr
    kept = system_grid.cli("run", "--no-stdin", "--", "wc", "-l", stdin="a\nb\n")
    assert kept.stdout.strip() == "0"  # as ssh -n
    none = system_grid.cli("run", "--", "cat")  # stdin /dev/null: nothing, and it ends
    assert (none.returncode, none.stdout) == (0, "")


def test_submit_stdin_from_a_file_and_a_clear_error_when_it_is_too_large(
    system_grid: SystemGrid,
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=1)
    (system_grid.tmp / "input.txt").write_text("x\ny\nz\n")
    task_id = system_grid.cli("submit", "--stdin", "input.txt", "--", "sort", "-r").stdout.strip()
    logs = system_grid.cli("logs", "-f", task_id)
    assert logs.stdout == "z\ny\nx\n", logs.stderr
    big = system_grid.tmp / "big.bin"
    big.write_bytes(b"\0" * (2 << 20))
    refused = system_grid.cli("submit", "--stdin", str(big), "--", "wc", "-c")
    assert refused.returncode == 2
    assert "larger than a task's stdin may be (1,048,576 bytes)" in refused.stderr
    assert len(system_grid.cli_json("ls")) == 1  # nothing more was queued


def test_run_script_ships_a_local_script_with_its_arguments(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=1, run_as=None)  # its default: a uid per task
    script = system_grid.tmp / "fix.sh"
    script.write_text('#!/bin/sh\necho "fixing $1 as $(id -u)"\nexit 3\n')  # (not executable)
    ran = system_grid.cli("run", "--script", str(script), "--", "disk-1")
    assert ran.returncode == 3, ran.stderr
    said, uid = ran.stdout.strip().rsplit(" ", 1)
    assert said == "fixing disk-1 as"
    assert uid != "0"  # the task's own identity, not the worker's
    missing = system_grid.cli("run", "--script", "nope.sh")
    assert missing.returncode == 2
    assert "cannot read --script nope.sh" in missing.stderr
