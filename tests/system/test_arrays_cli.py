"""Arrays and jobs from the command line, with real `gridrun` processes: submit an array,
wait for it, read one index's output, see what failed, retry only that, cancel; the %N cap
across a master SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from tests.helpers import eventually
from tests.system.conftest import SystemGrid
from tests.system.terminal import Terminal

pytestmark = [pytest.mark.system]


def test_an_array_from_submit_to_retry(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=4)
    fixed = system_grid.tmp / "fixed"
    # odd indexes fail (exit 3) until the flag exists
    script = f"[ $((GRIDRUN_ARRAY_INDEX % 2)) -eq 0 ] || [ -e {fixed} ] || exit 3"
    ran = system_grid.cli("submit", "--array", "0-5", "--wait", "--", "sh", "-c", script)
    assert ran.returncode == 1, ran.stderr
    job_id = ran.stdout.strip()
    assert "6 tasks: 3 failed, 3 succeeded" in ran.stderr
    assert "index 1: failed exit 3" in ran.stderr
    assert "index 5: failed exit 3" in ran.stderr

    shown = system_grid.cli("job", "show", job_id)
    assert shown.returncode == 0, shown.stderr
    assert "ended 6 of 6 (100%); succeeded 3" in shown.stdout
    assert "index 3: failed exit 3" in shown.stdout
    listed = system_grid.cli("job", "ls").stdout.splitlines()  # a pipe: TSV, whole ids
    assert listed[0].split("\t")[:6] == ["ID", "KIND", "TASKS", "ENDED", "OK", "NOT OK"]
    assert listed[1].split("\t")[:6] == [job_id, "array", "6", "6", "3", "3"]

    # waiting on it says what failed; retry runs only that again
    waited = system_grid.cli("wait", job_id)
    assert waited.returncode == 1
    assert f"{job_id}: 3 of 6 tasks did not succeed: index 1 (failed), 3 (failed)" in waited.stderr
    fixed.touch()
    again = system_grid.cli("job", "retry", job_id, "--wait")
    assert again.returncode == 0, again.stderr
    assert "3 tasks queued again" in again.stderr
    job = system_grid.cli_json("job", "show", job_id)
    assert (job["succeeded"], job["size"]) == (6, 6)
    tasks = system_grid.cli_json("ls", "--job", job_id)
    attempts = sorted((t["job_index"], t["attempt"]) for t in tasks)
    assert attempts == [(0, 1), (1, 2), (2, 1), (3, 2), (4, 1), (5, 2)]
    assert system_grid.cli("wait", job_id).returncode == 0


def test_items_reach_each_task_byte_for_byte(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=3)
    items = ['it\'s "quoted"', "  spaced  out ", "$HOME `date` \\n", "naïve ✓ 日本"]
    lines = system_grid.tmp / "items.txt"
    lines.write_bytes(("\n".join(items) + "\n").encode())
    made = system_grid.cli(
        "submit", "--each-line", str(lines), "--", "printenv", "GRIDRUN_ARRAY_ITEM"
    )
    assert made.returncode == 0, made.stderr
    job_id = made.stdout.strip()
    assert system_grid.cli("wait", job_id, "--timeout", "60").returncode == 0
    for index, item in enumerate(items):
        out = system_grid.cli("logs", job_id, "--index", str(index))
        assert out.stdout == item + "\n", (index, out.stdout)
    missing = system_grid.cli("logs", job_id, "--index", "9")
    assert missing.returncode == 1
    assert f"job {job_id} has no task at index 9" in missing.stderr

    data = system_grid.tmp / "items.json"
    data.write_text(json.dumps([{"lr": 0.1, "name": "ä"}, "x y", 3]))
    made = system_grid.cli(
        "submit", "--from-json", str(data), "--array", "0,2", "--", "printenv", "GRIDRUN_ARRAY_ITEM"
    )
    job_id = made.stdout.strip()
    assert system_grid.cli("wait", job_id).returncode == 0
    assert system_grid.cli("logs", job_id, "--index", "0").stdout == '{"lr":0.1,"name":"ä"}\n'
    assert system_grid.cli("logs", job_id, "--index", "2").stdout == "3\n"

    # bad input: said, nothing submitted
    for args, said in [
        (("--array", "3-1"), "counts down"),
        (("--each-line", str(system_grid.tmp / "nope.txt")), "cannot read"),
        (("--array", "1-2", "--file", str(lines)), "not both"),
    ]:
        refused = system_grid.cli("submit", *args, "--", "true")
        assert refused.returncode != 0, args
        assert said in refused.stderr, (args, refused.stderr)


def test_wait_for_tasks_exit_status_and_timeout(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=3)
    ok = system_grid.cli("submit", "--", "true").stdout.strip()
    bad = system_grid.cli("submit", "--", "sh", "-c", "exit 4").stdout.strip()
    slow = system_grid.cli("submit", "--", "sleep", "30").stdout.strip()
    assert system_grid.cli("wait", ok).returncode == 0
    waited = system_grid.cli("wait", ok, bad)
    assert waited.returncode == 1
    assert f"{bad}: failed exit 4" in waited.stderr
    timed = system_grid.cli("wait", "--timeout", "0.5", ok, slow)
    assert timed.returncode == 124
    assert f"still running after 0.5s: {slow}" in timed.stderr
    details = system_grid.cli("wait", "--json", ok, bad)
    assert {k: v["ok"] for k, v in json.loads(details.stdout).items()} == {ok: True, bad: False}
    cancelled = system_grid.cli("cancel", slow)
    assert cancelled.returncode == 0
    unknown = system_grid.cli("wait", "0123456789abcdef01234567")
    assert unknown.returncode == 1
    assert "no job with id" in unknown.stderr


def test_the_cap_holds_across_a_master_sigkill(system_grid: SystemGrid) -> None:
    """`--array 1-8%2`: never three at once by the tasks' own clocks, each index once, though
    the master is SIGKILLed while they run and four slots are free."""
    system_grid.start_master()
    system_grid.start_worker("w1", slots=4)
    log = system_grid.tmp / "times"
    step = (
        f'echo "start $GRIDRUN_ARRAY_INDEX $(date +%s.%N)" >> {log}; sleep 0.7;'
        f' echo "end $GRIDRUN_ARRAY_INDEX $(date +%s.%N)" >> {log}'
    )
    made = system_grid.cli("submit", "--array", "1-8%2", "--", "sh", "-c", step)
    job_id = made.stdout.strip()
    eventually(lambda: log.exists() and log.read_text().count("end") >= 2, 30)
    system_grid.kill_master(signal.SIGKILL)
    time.sleep(1.0)  # the worker runs on and keeps its results for the next master
    system_grid.start_master()
    assert system_grid.cli("wait", job_id, "--timeout", "90").returncode == 0
    events = []
    starts: dict[str, int] = {}
    for line in log.read_text().splitlines():
        what, index, at = line.split()
        events.append((float(at), 1 if what == "start" else -1))
        if what == "start":
            starts[index] = starts.get(index, 0) + 1
    assert starts == {str(i): 1 for i in range(1, 9)}  # every index, once
    running, most = 0, 0
    for _, change in sorted(events):
        running += change
        most = max(most, running)
    assert most == 2


def test_cancel_by_filter_asks_in_a_terminal_and_counts(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    for queue in ("nightly", "adhoc"):
        for _ in range(3):
            made = system_grid.cli("submit", "--queue", queue, "--on", "zone=nowhere", "--", "true")
            assert made.returncode == 0, made.stderr
    env = {**system_grid.env, "GRIDRUN_URL": system_grid.url}
    term = Terminal(
        [sys.executable, "-m", "gridrun", "cancel", "--queue", "nightly"], env, str(system_grid.tmp)
    )
    try:
        term.read_until(r"cancel 3 task\(s\) not ended that match --queue nightly\? \[y/N\]")
        os.write(term.fd, b"n\n")
    finally:
        code = term.close()
    assert code == 1  # said no: nothing cancelled
    queued = system_grid.cli_json("ls", "--state", "queued")
    assert len(queued) == 6
    done = system_grid.cli("cancel", "--queue", "nightly")  # no terminal: no question
    assert (done.returncode, done.stdout) == (0, "3 cancelled, 0 stopping\n")
    left = system_grid.cli_json("ls", "--state", "queued")
    assert {t["queue"] for t in left} == {"adhoc"}
    both = system_grid.cli("cancel", left[0]["id"], "--queue", "adhoc")
    assert both.returncode == 2
    assert "not both" in both.stderr


def test_every_command_takes_the_short_id_a_terminal_shows(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=2)
    task_id = system_grid.cli("submit", "--", "echo", "short").stdout.strip()
    job_id = system_grid.cli("submit", "--array", "0-1", "--", "echo", "arr").stdout.strip()
    assert system_grid.cli("wait", task_id[-8:], job_id[-8:]).returncode == 0
    assert system_grid.cli("logs", task_id[-8:]).stdout == "short\n"
    assert system_grid.cli_json("show", task_id[-8:])["id"] == task_id
    assert system_grid.cli_json("job", "show", job_id[-8:])["id"] == job_id
    assert system_grid.cli("logs", job_id[-8:], "--index", "1").stdout == "arr\n"
    tasks = system_grid.cli_json("ls", "--job", job_id[-8:])
    assert {t["job"] for t in tasks} == {job_id}
    # ids begin with the time they were made: one array's tasks share their first 12 digits
    ambiguous = system_grid.cli("show", tasks[0]["id"][:12])
    assert ambiguous.returncode == 1
    assert "names more than one task" in ambiguous.stderr
    assert tasks[0]["id"] in ambiguous.stderr
    assert tasks[1]["id"] in ambiguous.stderr
