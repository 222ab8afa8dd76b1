"""`gridrun logs -f` and `gridrun run` print output as it comes, with real processes."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import eventually
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]


def gridrun_process(grid: SystemGrid, *args: str) -> subprocess.Popen[str]:
    """A CLI command whose output the test reads as it comes."""
    return subprocess.Popen(
        [sys.executable, "-m", "gridrun", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**grid.env, "GRIDRUN_URL": grid.url},
    )


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_logs_follow_prints_lines_while_the_task_runs(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1")
    gate = system_grid.tmp / "gate"
    script = f"echo one; echo warn >&2; while [ ! -e {gate} ]; do sleep 0.05; done; echo two"
    task_id = system_grid.cli("submit", "--shell", script).stdout.strip()
    follower = gridrun_process(system_grid, "logs", "-f", task_id)
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "one\n"  # before the task can end
        assert system_grid.task(task_id)["state"] == "running"
        gate.touch()
        rest, errors = follower.communicate(timeout=30)
    finally:
        stop(follower)
    assert (follower.returncode, rest, errors) == (0, "two\n", "warn\n")


def test_run_survives_a_master_restart_without_losing_or_repeating_output(
    system_grid: SystemGrid,
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1")
    gate = system_grid.tmp / "gate"
    script = (
        f"echo before; while [ ! -e {gate} ]; do sleep 0.05; done; echo while-away;"
        f" touch {gate}-seen; while [ ! -e {gate}2 ]; do sleep 0.05; done; echo after; exit 5"
    )
    run = gridrun_process(system_grid, "run", "--shell", script)
    try:
        assert run.stdout is not None
        assert run.stdout.readline() == "before\n"
        system_grid.kill_master()  # SIGKILL: the follow stream is cut
        gate.touch()  # output made while no master listens: the worker holds it
        eventually(system_grid.tmp.joinpath("gate-seen").exists, 20)
        system_grid.start_master()
        eventually(lambda: system_grid.log("master").count("worker w1 connected") == 2, 20, 0.1)
        (system_grid.tmp / "gate2").touch()
        rest, errors = run.communicate(timeout=60)
    finally:
        stop(run)
    assert (run.returncode, rest) == (5, "while-away\nafter\n"), errors


def test_run_prints_binary_output_byte_for_byte_across_a_master_restart(
    system_grid: SystemGrid,
) -> None:
    """1 MiB of random bytes (no valid UTF-8 to speak of) through `gridrun run -- cat`: the
    same sha256 on the client, also when the master is SIGKILLed and restarted mid-stream.
    (Text events replaced each invalid byte by U+FFFD: 300,009 bytes came out as 543,305.)"""
    system_grid.start_master()
    system_grid.start_worker("w1")
    blob = system_grid.tmp / "blob"
    blob.write_bytes(os.urandom(1 << 20))
    plain = subprocess.run(
        [sys.executable, "-m", "gridrun", "run", "--", "cat", str(blob)],
        capture_output=True, env={**system_grid.env, "GRIDRUN_URL": system_grid.url}, timeout=60,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert hashlib.sha256(plain.stdout).digest() == hashlib.sha256(blob.read_bytes()).digest()

    gate, half = system_grid.tmp / "gate", 1 << 19
    script = (
        f"head -c {half} {blob}; touch {gate}-half; while [ ! -e {gate} ]; do sleep 0.05; done;"
        f" tail -c +{half + 1} {blob}"
    )
    run = subprocess.Popen(
        [sys.executable, "-m", "gridrun", "run", "--shell", script],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**system_grid.env, "GRIDRUN_URL": system_grid.url},
    )  # fmt: skip
    try:
        eventually(system_grid.tmp.joinpath("gate-half").exists, 20)
        system_grid.kill_master()  # mid-stream
        system_grid.start_master()
        gate.touch()
        out, errors = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, errors
    assert hashlib.sha256(out).digest() == hashlib.sha256(blob.read_bytes()).digest()


def merged(grid: SystemGrid, *args: str) -> str:
    """A CLI command's stdout and stderr as one pipe (`2>&1`): the order it wrote them in."""
    result = subprocess.run(
        [sys.executable, "-m", "gridrun", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=60,
        env={**grid.env, "GRIDRUN_URL": grid.url},
    )
    assert result.returncode == 0, result.stdout
    return result.stdout


def test_logs_print_both_streams_in_the_order_written_with_times_and_a_tail(
    system_grid: SystemGrid,
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1")
    pause = "sleep 0.3"
    script = f"echo o1; {pause}; echo e1 >&2; {pause}; echo o2; {pause}; echo e2 >&2"
    task_id = system_grid.cli("submit", "--shell", script).stdout.strip()
    assert system_grid.task(task_id, wait=30)["state"] == "succeeded"
    assert merged(system_grid, "logs", task_id) == "o1\ne1\no2\ne2\n"  # not o1 o2 e1 e2
    assert merged(system_grid, "logs", task_id, "--tail", "2") == "o2\ne2\n"
    assert merged(system_grid, "logs", task_id, "--stream", "stdout", "--tail", "1") == "o2\n"
    stamped = merged(system_grid, "logs", task_id, "-t").splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["o1", "e1", "o2", "e2"]
    times = [line.split(" ", 1)[0] for line in stamped]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", t) for t in times), times
    assert times == sorted(times)
    assert times[0] != times[-1]
    # with -f, the tail and then what comes, as it comes
    gate = system_grid.tmp / "gate"
    script = f"echo a; echo b; while [ ! -e {gate} ]; do sleep 0.05; done; echo c"
    running = system_grid.cli("submit", "--shell", script).stdout.strip()
    eventually(lambda: b"b" in _stdout(system_grid, running), 20)
    follower = gridrun_process(system_grid, "logs", "-f", "--tail", "1", running)
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "b\n"
        gate.touch()
        rest, _ = follower.communicate(timeout=30)
    finally:
        stop(follower)
    assert (follower.returncode, rest) == (0, "c\n")


def _stdout(grid: SystemGrid, task_id: str) -> bytes:
    return grid.cli("logs", task_id, "--stream", "stdout").stdout.encode()
