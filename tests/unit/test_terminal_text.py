"""What the CLI and the text log show of task and worker data: every state renders in a real
terminal console, and text that others wrote (names, argv, labels, errors, hostnames) never
acts on the terminal or forges a log line."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from rich.console import Console

from gridrun import logs
from gridrun.cli.render import (
    attempt_table,
    task_detail,
    task_rows,
    task_table,
    top_frame,
    tsv,
    worker_rows,
    worker_table,
)
from gridrun.model import TaskState, WorkerState
from gridrun.text import visible

HOSTILE = "evil\x1b]0;pwned\x07\x1b[2J\x1b[31m[/]\n2026-01-01 INFO forged\r\u202etxt.exe\x9b"


def a_task(state: str, **fields: Any) -> Any:
    base = {
        "id": "019ac4a3f2b75c0e7d1a9f3b", "name": None, "state": state, "cmd": None,
        "argv": ["true"], "shell": False, "env": {}, "secret_env": [], "cwd": None,
        "timeout_s": None, "priority": 0, "labels": {}, "attempt": 1, "worker_id": "w1",
        "cancel_requested": False, "created_at": "2026-11-28T03:00:00+00:00",
        "assigned_at": None, "started_at": None, "finished_at": None, "exit_code": None,
        "signal": None, "error": None, "max_attempts": 1, "queue_timeout_s": None,
        "idempotency_key": None, "submitted_by": None, "retry_at": None, "on": None,
        "cpu": 0.0, "memory_mb": 0, "gpus": 0, "after": [], "job": None,
        "pinned_worker": None, "task_class": None, "placement": "spread",
        "unschedulable": None, "attempts": None,
    }  # fmt: skip
    return {**base, **fields}


def a_worker(state: str, **fields: Any) -> Any:
    base = {
        "id": "w1", "hostname": "host-1", "labels": {"zone": "a"}, "slots": 2, "running": 0,
        "assigned": 0, "state": state, "legacy": False, "last_seen": "2026-11-28T03:00:00+00:00",
        "containment": "cgroup", "quarantined": None,
    }  # fmt: skip
    return {**base, **fields}


def an_attempt(state: str, **fields: Any) -> Any:
    base = {
        "attempt": 1, "worker_id": "w1", "state": state, "assigned_at": None,
        "started_at": None, "finished_at": None, "exit_code": None, "signal": None,
        "error": None, "cpu_s": 0.5, "peak_memory_bytes": 1024,
    }  # fmt: skip
    return {**base, **fields}


def terminal() -> tuple[Console, io.StringIO]:
    """A console that writes colours and all, as it does to a real terminal."""
    out = io.StringIO()
    return Console(file=out, force_terminal=True, color_system="truecolor", width=120), out


def test_every_task_and_worker_state_renders_in_ls_show_and_top() -> None:
    tasks = [a_task(state, id=f"t-{state}") for state in TaskState]
    workers = [a_worker(state, id=f"w-{state}") for state in WorkerState]
    console, out = terminal()
    console.print(task_table(tasks, console.width))
    for t in tasks:
        console.print(task_detail(t))
        attempts = attempt_table({**t, "attempts": [an_attempt(t["state"])]})
        assert attempts is not None
        console.print(attempts)
    console.print(worker_table(workers))
    counts = {str(state): 1 for state in TaskState}
    console.print(top_frame("http://127.0.0.1:9092", counts, workers, [], tasks, 120))
    text = out.getvalue()
    for state in [*TaskState, *WorkerState]:
        assert str(state) in text


def test_a_state_this_cli_does_not_know_is_shown_plain() -> None:
    console, out = terminal()
    console.print(task_table([a_task("paused-by-a-newer-master")], console.width))
    assert "paused-by-a-newer-master" in out.getvalue()


def test_visible_escapes_controls_and_invisible_characters_and_keeps_the_rest() -> None:
    assert visible("plain text: é ü 漢字 [bold] $HOME") == "plain text: é ü 漢字 [bold] $HOME"
    assert visible("a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert visible("\x1b[2J\x07\x00\x7f\x9b") == "\\x1b[2J\\x07\\x00\\x7f\\x9b"
    assert visible("\u202eexe.txt\u200b\ufeff") == "\\u202eexe.txt\\u200b\\ufeff"


def hostile_task() -> Any:
    return a_task(
        "failed",
        name=HOSTILE,
        argv=["echo", HOSTILE],
        worker_id=HOSTILE,
        labels={"zone": HOSTILE},
        error=HOSTILE,
        unschedulable=HOSTILE,
        cwd=HOSTILE,
        env={"X": HOSTILE},
        attempts=[an_attempt("failed", worker_id=HOSTILE, error=HOSTILE)],
    )


def assert_inert(text: str) -> None:
    """Nothing in `text` acts on a terminal: no ESC, BEL, CR, C1 or bidi override, and no line
    of it begins with the forged one."""
    for char in ("\x1b", "\x07", "\r", "\x9b", "\u202e"):
        assert char not in text, repr(text)
    assert not any(line.startswith("2026-01-01 INFO forged") for line in text.split("\n"))


def test_hostile_task_data_reaches_no_terminal_through_ls_show_top_or_a_pipe() -> None:
    t = hostile_task()
    w = a_worker("online", id=HOSTILE, hostname=HOSTILE, labels={"k": HOSTILE}, quarantined=HOSTILE)
    console = Console(file=io.StringIO(), width=200, record=True, force_terminal=True)
    console.print(task_table([t], console.width))
    console.print(task_detail(t))
    table = attempt_table(t)
    assert table is not None
    console.print(table)
    console.print(worker_table([w]))
    console.print(top_frame(HOSTILE, {"failed": 1}, [w], [{"owner": HOSTILE, "queue": HOSTILE,
                  "queued": 1, "running": 0}], [t], 200))  # fmt: skip
    shown = console.export_text()  # what was printed, without the console's own colours
    assert_inert(shown)
    assert "\\x1b]0;pwned" in shown  # shown, escaped: the user sees what was there
    piped = tsv(*task_rows([t])) + "\n" + tsv(*worker_rows([w]))
    assert_inert(piped)
    assert len(piped.split("\n")) == 4  # a header and one line each: nothing forged a row


def test_the_text_log_escapes_what_it_prints_and_keeps_tracebacks_under_their_record() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.TextFormatter())
    log = logging.getLogger("gridrun.test-text-log")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("task label %s refused", HOSTILE)
        try:
            raise ValueError(HOSTILE)
        except ValueError:
            log.exception("while handling %s", "x")
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    assert_inert(text)
    lines = text.rstrip("\n").split("\n")
    records = [line for line in lines if not line.startswith("    ")]
    assert len(records) == 2  # a record per call; the traceback's lines indented under it
    assert "forged" in records[0]  # there, escaped, on the record's own line


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_setup_installs_a_formatter_that_keeps_one_record_a_line(fmt: str) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup("info", fmt)
        formatter = root.handlers[0].formatter
        assert formatter is not None
        record = logging.LogRecord("gridrun.x", logging.INFO, __file__, 1, HOSTILE, None, None)
        line = formatter.format(record)
        assert "\n" not in line
        assert "\x1b" not in line
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])


def test_gridrun_workers_says_who_tasks_run_as_and_whether_they_are_apart() -> None:
    said = {
        "cgroup (v2); tasks as a uid each (2000000000-2000065535)": "a uid each",
        "subreaper; tasks as nobody, all alike (not apart from each other)": "nobody, all alike",
        "cgroup (v2); tasks as the worker's user (not apart from each other or from the"
        " worker)": "the worker's user",
        "cgroup (v2)": "-",  # a worker of the previous version does not say
    }
    for containment, shown in said.items():
        headers, rows = worker_rows([a_worker("online", containment=containment)])
        assert dict(zip(headers, rows[0], strict=True))["TASKS AS"] == shown


def test_show_says_waiting_for_a_task_a_limit_holds_and_unschedulable_only_otherwise() -> None:
    held = a_task("queued", unschedulable="waiting for concurrency key db (2/2 running)")
    never = a_task("queued", unschedulable="no live worker matches gpu=a100")
    console = Console(file=io.StringIO(), width=120, record=True)
    console.print(task_detail(held))
    console.print(task_detail(never))
    lines = console.export_text().splitlines()
    assert any(line.split()[:2] == ["waiting", "waiting"] for line in lines)  # label, reason
    assert any(line.split()[:1] == ["unschedulable"] and "gpu=a100" in line for line in lines)
    assert not any(
        line.split()[:1] == ["unschedulable"] and "concurrency" in line for line in lines
    )
