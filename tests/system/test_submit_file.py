"""`gridrun submit --file`: batches of commands and a live progress bar, read from a real
terminal (a pty), as a user sees it."""

from __future__ import annotations

import json
import re
import sys

import pytest

from tests.system.conftest import SystemGrid
from tests.system.terminal import Terminal

pytestmark = [pytest.mark.system]


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
        # which line failed, how, and its task: to look at it or fix the file
        term.read_until(r"commands\.txt:4: failed exit 3: exit 3  \([0-9a-f]{24}\)")
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
    args = ("submit", "--file", str(commands), "--no-wait", "--idempotency-key", "k")
    first = system_grid.cli(*args)
    assert first.returncode == 0, first.stderr
    again = system_grid.cli(*args)
    assert again.stdout == first.stdout
    assert len(first.stdout.split()) == 2
    empty = system_grid.tmp / "empty.txt"
    empty.write_text("# nothing\n\n")
    refused = system_grid.cli("submit", "--file", str(empty))
    assert refused.returncode == 2
    assert "has no commands" in refused.stderr


def test_top_shows_workers_and_tasks_live_and_quits_on_ctrl_c(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=2, labels=("zone=b",))
    system_grid.cli("submit", "--name", "first", "--", "true")
    env = {**system_grid.env, "GRIDRUN_URL": system_grid.url, "COLUMNS": "140"}
    term = Terminal(
        [sys.executable, "-m", "gridrun", "top", "--interval", "0.3"], env, str(system_grid.tmp)
    )
    try:
        term.read_until(r"w1 +online .*zone=b")
        term.read_until(r"first")
        second = system_grid.cli("submit", "--name", "second-one", "--", "sleep", "600")
        term.read_until(r"second-one")  # appears without restarting top
        term.read_until(r"running 1")
        term.read_until(r"anonymous +default +0 +0 +1")  # queued, assigned, running
        term.interrupt()
    finally:
        code = term.close()
    assert code == 0
    system_grid.cli("cancel", second.stdout.strip())


def test_ls_and_workers_fit_80_columns_and_print_plain_lines_into_a_pipe(
    system_grid: SystemGrid,
) -> None:
    system_grid.start_master()
    system_grid.start_worker("a-worker-with-a-rather-long-name", slots=1)
    long = "python3 -c 'print(1)' --input /data/raw/2026-11-28 --output /data/clean/2026-11-28"
    done = system_grid.cli("submit", "--name", "prep", "--shell", "--", long).stdout.strip()
    system_grid.task(done, wait=30)
    queued = system_grid.cli("submit", "--on", "zone=none", "--", "true").stdout.strip()
    env = {**system_grid.env, "GRIDRUN_URL": system_grid.url, "COLUMNS": "80", "LINES": "40"}
    term = Terminal([sys.executable, "-m", "gridrun", "ls"], env, str(system_grid.tmp))
    try:
        term.read_until(queued[-8:])  # short ids in a terminal
        term.read_until(done[-8:] + r".*\n")
    finally:
        assert term.close() == 0
    lines = [line for line in term.text.replace("\r", "").split("\n") if line.strip()]
    assert len(lines) == 3, lines  # the header, one line per task: nothing wraps
    assert all(len(line) <= 80 for line in lines), lines
    assert re.match(rf"{done[-8:]} +succeeded +0 ", lines[2])  # id, state, exit whole
    assert re.match(rf"{queued[-8:]} +queued +- ", lines[1])
    assert lines[2].rstrip().endswith("…")  # the command, cut on its one line
    piped = system_grid.cli("ls").stdout.rstrip("\n").split("\n")  # into a pipe: plain lines
    assert piped[0].split("\t")[:3] == ["ID", "STATE", "EXIT"]
    row = piped[2].split("\t")
    assert (row[0], row[1], row[3], row[-1]) == (
        done, "succeeded", "a-worker-with-a-rather-long-name", f"prep: {long}"
    )  # fmt: skip
    workers = system_grid.cli("workers").stdout.rstrip("\n").split("\n")
    assert workers[0].split("\t")[:2] == ["ID", "STATE"]
    assert workers[1].split("\t")[:2] == ["a-worker-with-a-rather-long-name", "online"]


def test_ls_sort_limit_and_filters_pick_from_every_task_not_the_newest(
    system_grid: SystemGrid,
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=1)
    slow = system_grid.cli("submit", "--", "sleep", "0.6").stdout.strip()
    system_grid.task(slow, wait=30)
    quick = []
    for _ in range(3):
        quick.append(system_grid.cli("submit", "--", "true").stdout.strip())
        system_grid.task(quick[-1], wait=30)
    longest = system_grid.cli_json("ls", "--sort", "duration", "--limit", "1")
    assert [t["id"] for t in longest] == [slow]  # the oldest, though only 1 was asked for
    assert system_grid.cli_json("ls", "--since", "1h", "--limit", "10") != []
    assert system_grid.cli_json("ls", "--until", "1h") == []  # none made over an hour ago
    bad = system_grid.cli("ls", "--since", "last tuesday")
    assert bad.returncode == 2
    assert "--since 'last tuesday': give a duration ago" in bad.stderr


def test_submit_label_and_ls_label_find_tasks_by_their_labels(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=2, labels=("team=data", "zone=a"))
    tagged = system_grid.cli(
        "submit", "--label", "team=data", "--label", "zone=a", "--", "true"
    ).stdout.strip()
    other = system_grid.cli("submit", "--label", "team=data", "--", "true").stdout.strip()
    plain = system_grid.cli("submit", "--", "true").stdout.strip()
    for task_id in (tagged, other, plain):
        assert system_grid.task(task_id, wait=30)["state"] == "succeeded"
    assert system_grid.task(tagged)["labels"] == {"team": "data", "zone": "a"}
    found = system_grid.cli_json("ls", "--label", "team=data")
    assert {t["id"] for t in found} == {tagged, other}
    both = system_grid.cli_json("ls", "-l", "team=data", "-l", "zone=a")
    assert [t["id"] for t in both] == [tagged]  # every label given must hold
    assert system_grid.cli_json("ls", "--label", "team=ml") == []
    # a label is also where the task may run: no worker labelled so, none runs it
    elsewhere = system_grid.cli("submit", "--label", "team=ml", "--", "true").stdout.strip()
    assert system_grid.task(elsewhere, wait=1)["state"] == "queued"
    bad = system_grid.cli("ls", "--label", "team")
    assert bad.returncode == 2
    assert "--label 'team' must look like K=V" in bad.stderr


def test_top_once_and_json_serve_a_script(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=1)
    done = system_grid.cli("submit", "--", "true").stdout.strip()
    system_grid.task(done, wait=30)
    framed = system_grid.cli("top", "--once", timeout=30)
    assert framed.returncode == 0
    assert "w1" in framed.stdout
    assert done in framed.stdout
    line = system_grid.cli("top", "--json", "--once", timeout=30)
    assert line.returncode == 0, line.stderr
    (frame,) = [json.loads(text) for text in line.stdout.splitlines()]
    assert frame["tasks"]["succeeded"] == 1
    assert [w["id"] for w in frame["workers"]] == ["w1"]
    assert [t["id"] for t in frame["recent"]] == [done]
    assert frame["owners"] == []  # nothing queued or running now
