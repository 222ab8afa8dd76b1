"""How the CLI shows things: Rich tables and panels, exit statuses, addresses."""

from __future__ import annotations

import enum
import shlex
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gridrun.client import TaskDict, WorkerDict
from gridrun.model import TaskState, WorkerState
from gridrun.text import short_id, visible

# every state has a style (a test renders each one): an unknown state is shown unstyled
STATE_STYLE: dict[str, str] = {
    TaskState.WAITING: "dim cyan",
    TaskState.QUEUED: "cyan",
    TaskState.ASSIGNED: "blue",
    TaskState.RUNNING: "bold blue",
    TaskState.SUCCEEDED: "green",
    TaskState.FAILED: "red",
    TaskState.TIMED_OUT: "magenta",
    TaskState.CANCELLED: "yellow",
    TaskState.LOST: "bold red",
    TaskState.DELIVERED: "dim green",
    TaskState.EXPIRED: "dim yellow",
    TaskState.REJECTED: "bold magenta",
    TaskState.SKIPPED: "dim",
    WorkerState.DRAINING: "yellow",
    WorkerState.ONLINE: "green",
    WorkerState.OFFLINE: "dim",
}


def exit_status(task: TaskDict) -> int:
    """The CLI's exit status for a finished task, following ssh and timeout(1) conventions:
    a task that timed out exits 124 as `timeout` does, whatever signal ended it."""
    if task["state"] == TaskState.TIMED_OUT:
        return 124
    if task["exit_code"] is not None:
        return task["exit_code"]
    if task["signal"]:
        return 128 + task["signal"]
    return EXIT_STATUS.get(task["state"], 1)


# the CLI's exit status for a task that ended without an exit code or signal
EXIT_STATUS: dict[str, int] = {
    TaskState.SUCCEEDED: 0,
    TaskState.TIMED_OUT: 124,
    TaskState.CANCELLED: 130,
    TaskState.LOST: 255,
    TaskState.DELIVERED: 0,
    TaskState.EXPIRED: 124,
    TaskState.REJECTED: 126,  # refused by the worker's policy, like "cannot execute"
    TaskState.FAILED: 127,  # it could not be started
}


def outcome(task: Mapping[str, Any]) -> str:
    """How a task ended: its state, exit code or signal, and error."""
    parts = [task["state"]]
    if task["exit_code"] is not None:
        parts.append(f"exit {task['exit_code']}")
    if task["signal"]:
        parts.append(f"signal {task['signal']}")
    if task["error"]:
        parts.append(f"({task['error']})")
    return " ".join(parts)


def styled_state(state: str) -> str:
    """A state as Rich markup, in its colour; one the CLI does not know (a newer master's)
    shown as it is."""
    style = STATE_STYLE.get(state)
    return f"[{style}]{state}[/]" if style else cell(state)


def cell(text: str) -> str:
    """Text from a task, a worker or a client as Rich markup that shows it literally: its
    control characters escaped (`gridrun.text.visible`), its brackets not read as markup."""
    return escape(visible(text))


def when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone().strftime("%H:%M:%S")


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _duration(start: str | None, end: str | None) -> str:
    seconds = _seconds(start, end)
    if seconds is None:
        return "-"
    return f"{seconds:.2f}s" if seconds < 60 else f"{seconds / 60:.1f}m"


def command_of(task: TaskDict) -> str:
    return task["cmd"] if task["cmd"] is not None else shlex.join(task["argv"])


class SortKey(enum.StrEnum):
    CREATED = "created"
    DURATION = "duration"
    CPU = "cpu"
    MEMORY = "memory"


USAGE_KEYS = (SortKey.CPU, SortKey.MEMORY)


WORKER_WIDTH = 16  # a worker's name beyond this is cut (`--json` and a pipe have it whole)


def task_table(tasks: list[TaskDict], width: int, usage: bool = False, short: bool = True) -> Table:
    """The tasks for a terminal `width` columns wide: the id (`short`: its short form, which
    every command takes back), state and exit are never cut (they are what a user reads and
    copies); each task is one line, its command cut with an ellipsis where it does not fit."""
    headers, rows = task_rows(tasks, usage)
    for row in rows if short else ():
        row[0] = short_id(row[0])
    widths = [
        max([len(header)] + [len(row[i]) for row in rows]) for i, header in enumerate(headers)
    ]
    widths[3] = min(widths[3], WORKER_WIDTH)
    # the worker and the command share what the others leave
    left = width - sum(widths) + widths[3] + widths[-1] - 2 * (len(headers) - 1)
    widths[3] = min(widths[3], max(6, left // 3))
    widths[-1] = max(10, left - widths[3])
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header, size_ in zip(headers, widths, strict=True):
        whole = size_ if header in ("ID", "STATE", "EXIT") else None
        table.add_column(
            header, no_wrap=True, overflow="ellipsis", max_width=size_, min_width=whole
        )
    for t, row in zip(tasks, rows, strict=True):
        cells = [escape(text) for text in row]  # (the rows are visible() already)
        cells[1] = styled_state(t["state"])
        if t["name"]:  # (the name in bold, then the command as in the plain row)
            name = visible(t["name"])
            cells[-1] = f"[bold]{escape(name)}[/]: " + escape(row[-1][len(name) + 2 :])
        table.add_row(*cells)
    if not tasks:
        table.caption = "no tasks"
    return table


def task_rows(tasks: list[TaskDict], usage: bool = False) -> tuple[list[str], list[list[str]]]:
    """The task list as plain text: the headers, and one row per task, each cell on one
    line with its control characters escaped (a newline shown as \\n, ESC as \\x1b)."""
    headers = ["ID", "STATE", "EXIT", "WORKER", "CREATED", "TOOK", "COMMAND"]
    if usage:
        headers[6:6] = ["CPU", "PEAK MEM"]
    rows = []
    for t in tasks:
        exit_text = "-" if t["exit_code"] is None else str(t["exit_code"])
        if t["signal"]:
            exit_text = f"sig {t['signal']}"
        command = (f"{t['name']}: " if t["name"] else "") + command_of(t)
        rows.append(
            [
                visible(text)
                for text in (
                    t["id"],
                    t["state"],
                    exit_text,
                    t["worker_id"] or "-",
                    when(t["created_at"]),
                    _duration(t["started_at"], t["finished_at"]),
                    *([cpuwhen(t.get("cpu_s")), size(t.get("peak_memory_bytes"))] if usage else []),
                    command,
                )
            ]
        )
    return headers, rows


def tsv(headers: list[str], rows: list[list[str]]) -> str:
    """Tab-separated lines with a header, nothing cut: what `ls` and `workers` print into a
    pipe (as `kubectl get` does), for cut, awk and sort. A cell's tabs, newlines and other
    control characters are escaped, so each row is one line of whole fields."""
    return "\n".join("\t".join(visible(c) for c in line) for line in [headers, *rows])


def _needs(task: TaskDict) -> str:
    parts = []
    if task["cpu"]:
        parts.append(f"{task['cpu']:g} CPU")
    if task["memory_mb"]:
        parts.append(f"{task['memory_mb']} MiB")
    if task["gpus"]:
        parts.append(f"{task['gpus']} GPU")
    return ", ".join(parts) or "-"


def task_detail(task: TaskDict) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str]] = [
        ("id", task["id"]),
        ("name", task["name"] or "-"),
        ("state", styled_state(task["state"])),
        ("command", command_of(task)),
        ("argv", shlex.join(task["argv"])),
        ("shell", str(task["shell"]).lower()),
        ("labels", ", ".join(f"{k}={v}" for k, v in task["labels"].items()) or "-"),
        ("on", task["on"] or "-"),
        ("needs", _needs(task)),
        ("after", ", ".join(task["after"]) or "-"),
        ("env", ", ".join(task["env"]) or "-"),
        ("secret env", ", ".join(task.get("secret_env", [])) or "-"),
        ("cwd", task["cwd"] or "-"),
        ("timeout", f"{task['timeout_s']:g}s" if task["timeout_s"] else "-"),
        ("priority", str(task["priority"])),
        ("attempt", f"{task['attempt']} of {task['max_attempts']}"),
        ("worker", task["worker_id"] or "-"),
        ("created", task["created_at"]),
        ("started", task["started_at"] or "-"),
        ("finished", task["finished_at"] or "-"),
        ("took", _duration(task["started_at"], task["finished_at"])),
        ("exit code", "-" if task["exit_code"] is None else str(task["exit_code"])),
        ("signal", str(task["signal"]) if task["signal"] else "-"),
        ("error", task["error"] or "-"),
    ]
    if task["cancel_requested"] and task["state"] in (TaskState.ASSIGNED, TaskState.RUNNING):
        rows.append(("cancel", "requested"))
    if task["retry_at"]:
        rows.append(("retry at", task["retry_at"]))
    if task["unschedulable"]:
        # a limit's reason (a quota, a concurrency key) says the task waits its turn: it is
        # not unschedulable, and the row says so
        why = task["unschedulable"]
        rows.append(("waiting" if why.startswith("waiting") else "unschedulable", why))
    for key, value in rows:
        table.add_row(key, value if key == "state" else cell(value))
    return table


def attempt_table(task: TaskDict) -> Table | None:
    """Every attempt, when there was more than one or what one used was measured."""
    attempts = task["attempts"] or []
    measured = any(a.get("cpu_s") is not None for a in attempts)
    if len(attempts) < 2 and not measured:
        return None
    table = Table(box=None, header_style="bold", title="attempts", title_justify="left")
    columns = ["#", "STATE", "EXIT", "WORKER", "STARTED", "TOOK", "CPU", "PEAK MEM", "ERROR"]
    for column in columns if measured else [c for c in columns if c not in ("CPU", "PEAK MEM")]:
        table.add_column(column)
    for a in attempts:
        cells = [
            str(a["attempt"]),
            styled_state(a["state"]),
            "-" if a["exit_code"] is None else str(a["exit_code"]),
            cell(a["worker_id"]),
            when(a["started_at"]),
            _duration(a["started_at"], a["finished_at"]),
        ]
        if measured:
            cells += [cpuwhen(a.get("cpu_s")), size(a.get("peak_memory_bytes"))]
        table.add_row(*cells, cell(a["error"] or ""))
    return table


def cpuwhen(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}s"


def size(n: int | None) -> str:
    """Bytes in binary units, as `ls -h` shows them."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def worker_table(workers: list[WorkerDict]) -> Table:
    headers, rows = worker_rows(workers)
    table = Table(box=None, header_style="bold")
    for header in headers:
        whole = header in ("ID", "STATE", "RUNNING", "ASSIGNED", "SLOTS")
        table.add_column(header, no_wrap=whole, overflow="ellipsis" if not whole else "fold")
    for w, row in zip(workers, rows, strict=True):
        cells = [cell(text) for text in row]
        cells[1] = styled_state(w["state"]) + (
            f" [red](quarantined: {cell(q)})[/]" if (q := w.get("quarantined")) else ""
        )
        table.add_row(*cells)
    if not workers:
        table.caption = "no workers have connected yet"
    return table


def worker_rows(workers: list[WorkerDict]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "ID", "STATE", "RUNNING", "ASSIGNED", "SLOTS", "HOST", "LABELS", "CONTAINS", "TASKS AS",
        "LAST SEEN",
    ]  # fmt: skip
    rows = [
        [
            w["id"] + (" (legacy)" if w["legacy"] else ""),
            w["state"] + (f" (quarantined: {q})" if (q := w.get("quarantined")) else ""),
            str(w["running"]),
            str(w.get("assigned", 0)),  # (a master of the previous version does not say)
            str(w["slots"]),
            w["hostname"],
            ", ".join(f"{k}={v}" for k, v in w["labels"].items()) or "-",
            (w.get("containment") or "-").split(" ")[0],  # the mode; --json: the detail
            tasks_as(w.get("containment")),
            when(w["last_seen"]),
        ]
        for w in workers
    ]
    return headers, rows


def tasks_as(containment: str | None) -> str:
    """Who a worker's tasks run as, from what its Hello said (an older worker: not said)."""
    _, said, who = (containment or "").partition("; tasks as ")
    return who.split(" (")[0] if said else "-"


def owner_table(owners: list[dict[str, Any]]) -> Table:
    """Tasks queued and running per owner and queue (GET /v1/owners)."""
    table = Table("OWNER", "QUEUE", "QUEUED", "ASSIGNED", "RUNNING", box=None, header_style="bold")
    for o in owners:
        table.add_row(
            cell(o["owner"]), cell(o["queue"]), f"{o['queued']:,}",
            f"{o.get('assigned', 0):,}", f"{o['running']:,}",  # (no assigned: an older master)
        )  # fmt: skip
    return table


def top_frame(
    heading: str,
    counts: dict[str, int],
    workers: list[WorkerDict],
    owners: list[dict[str, Any]],
    recent: list[TaskDict],
    width: int,
    short: bool = True,
) -> Group:
    """One frame of `gridrun top`: tasks per state, workers, owners, the recent tasks."""
    states = "  ".join(f"{styled_state(state)} {n}" for state, n in counts.items() if n)
    return Group(
        Text.from_markup(f"[bold]gridrun[/] {cell(heading)}  {states or 'no tasks'}"),
        worker_table(workers),
        owner_table(owners),
        task_table(recent, width, short=short),
    )
