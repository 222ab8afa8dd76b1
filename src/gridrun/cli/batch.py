"""Many tasks as one job from the command line: `submit --file` (a file of commands, one task
a line), `submit --array/--each-line/--from-json` (an array), `run --all` (a broadcast),
and bulk cancel; following a job with a progress bar until all have ended and saying, at the
end, which did not succeed. The `job` and `wait` commands are in `jobs`."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gridrun.cli import render
from gridrun.cli.common import connect, err, fail, guard, print_json, say
from gridrun.cli.options import TaskOptions
from gridrun.client import Client, JobDict
from gridrun.errors import ClientError, GridrunError
from gridrun.model import TaskState
from gridrun.text import visible

POLL_S = 0.5
SHOWN = 10  # unsuccessful tasks named in a summary, the rest counted


def command_lines(file: Path) -> list[tuple[int, str]]:
    """(line number, command) for each command in the file."""
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}", 2)
    lines = [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        fail(f"{file} has no commands (one per line; blank lines and # comments are skipped)", 2)
    return lines


def submit_file(
    client: Client,
    file: Path,
    lines: list[tuple[int, str]],
    options: TaskOptions,
    no_wait: bool,
    json_out: bool,
) -> None:
    """Submit the lines as one job (one transaction: all of them or none); unless told not
    to, show progress until all have ended, then which lines did not succeed. With
    --idempotency-key K, the command at index N gets K-N: submitting the same file again is
    harmless."""
    label = options.name or file.name
    options.ship(client)
    template = {
        k: v for k, v in options.body(["-"], name=label).items() if k not in ("cmd", "argv")
    }
    try:
        made = client.submit_array(template, commands=[cmd for _, cmd in lines])
    except GridrunError as exc:
        raise ClientError(f"{file}: {exc.message} (nothing was submitted)") from None
    job_id = made["id"]
    if no_wait:
        tasks = sorted(client.iter_tasks(job=job_id), key=lambda t: t["job_index"] or 0)
        ids = [t["id"] for t in tasks]
        print_json(ids) if json_out else print("\n".join(ids))
        err.print(f"job {job_id} (gridrun job show {job_id})", highlight=False)
        return
    job = follow_job(client, job_id, label)
    if json_out:
        print_json(job)
    else:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(job["counts"].items()) if n)
        say(f"{job['size']} tasks from {file}: {counts}")
        _say_failed_lines(file, lines, job)
    raise typer.Exit(0 if job["succeeded"] == job["size"] else 1)


def _say_failed_lines(file: Path, lines: list[tuple[int, str]], job: JobDict) -> None:
    """Which lines did not succeed (the first SHOWN), as FILE:LINE: how, the
    command, and the task id, so a user can look at one or fix the file."""
    bad = job["unsuccessful"]
    for task in bad[:SHOWN]:
        number, command = lines[task["index"] or 0]
        say(f"  {file}:{number}: {render.outcome(task)}: {visible(command)}  ({task['id']})")
    more = job["ended"] - job["succeeded"] - min(len(bad), SHOWN)
    if more > 0:
        say(f"  and {more:,} more (gridrun job show {job['id']})")


# ---- submitting an array


def read_items(each_line: Path | None, from_json: Path | None) -> list[str] | None:
    """The items of --each-line (each line as it is, without its newline) or --from-json
    (each item of a JSON array, as JSON); None without either."""
    if each_line is not None and from_json is not None:
        fail("give --each-line or --from-json, not both", 2)
    source = each_line if each_line is not None else from_json
    if source is None:
        return None
    try:
        raw = sys.stdin.buffer.read() if str(source) == "-" else source.read_bytes()
    except OSError as exc:
        fail(f"cannot read {source}: {exc.strerror or exc}", 2)
    if each_line is not None:
        lines = raw.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()  # (the newline that ends the last line)
        items = []
        for number, line in enumerate(lines, 1):
            try:
                items.append(line.decode("utf-8"))
            except UnicodeDecodeError:
                fail(f"{source}:{number}: not UTF-8 text (an item goes into a variable)", 2)
        if not items:
            fail(f"{source} has no lines", 2)
        return items
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        fail(f"{source} is not JSON: {exc}", 2)
    if not isinstance(data, list) or not data:
        fail(f"{source} must hold a JSON array with at least one item", 2)
    return [json.dumps(item, ensure_ascii=False, separators=(",", ":")) for item in data]


def submit_array(
    client: Client,
    command: list[str],
    options: TaskOptions,
    array: str | None,
    items: list[str] | None,
    wait: bool,
    json_out: bool,
) -> None:
    """Submit one array job and print its id; with --wait, follow it to its end."""
    if not command and options.script is None:
        fail("give the command each task runs, e.g. gridrun submit --array 1-10 -- ./step.sh", 2)
    options.ship(client)
    made = client.submit_array(options.body(command), array=array, items=items)
    job_id = made["id"]
    if not wait:
        print_json(made) if json_out else print(job_id)
        return
    if not json_out:
        print(job_id, flush=True)  # (stdout: for a script; the progress goes to stderr)
    err.print(f"job {job_id}: {made['size']:,} tasks", highlight=False)
    done = follow_job(client, job_id, options.name or job_id)
    finish(done, json_out)


# ---- following a job


def follow_job(client: Client, job_id: str, label: str, timeout_s: float | None = None) -> JobDict:
    """A progress bar (on stderr) of the job's tasks ended, succeeded and not, until all have
    ended (or the timeout); the job as it was last read."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[green]{task.fields[ok]} ok[/] [red]{task.fields[bad]} failed[/]"),
        TimeElapsedColumn(),
    )
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with Progress(*columns, console=err, transient=False) as progress:
        bar = progress.add_task(visible(label), total=None, ok=0, bad=0)
        while True:
            job = client.job(job_id, tasks=False)
            progress.update(
                bar,
                total=job["size"],
                completed=job["ended"],
                ok=job["succeeded"],
                bad=job["ended"] - job["succeeded"],
            )
            if job["ended"] >= job["size"]:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                return job
            time.sleep(POLL_S)


def summary(job: JobDict) -> str:
    """One line: how many of the job's tasks did what, and which did not succeed."""
    counts = ", ".join(f"{n:,} {state}" for state, n in sorted(job["counts"].items()) if n)
    return f"job {job['id']}: {job['size']:,} tasks: {counts or 'none'}"


def unsuccessful_lines(job: JobDict) -> list[str]:
    """`index N: failed exit 3  (TASK)` for the first few that did not succeed."""
    bad = job["unsuccessful"]
    lines = [f"  index {t['index']}: {render.outcome(t)}  ({t['id']})" for t in bad[:SHOWN]]
    more = job["ended"] - job["succeeded"] - min(len(bad), SHOWN)
    if more > 0:
        lines.append(f"  and {more:,} more (gridrun job show {job['id']})")
    return lines


def finish(job: JobDict, json_out: bool) -> None:
    """Say how the job ended and exit 0 if every task succeeded, else 1."""
    if json_out:
        print_json(job)
    else:
        say(summary(job))
        for line in unsuccessful_lines(job):
            say(line)
    raise typer.Exit(0 if job["succeeded"] == job["size"] and job["size"] else 1)


# ---- gridrun run --all: a broadcast job, followed


def run_everywhere(client: Client, body: dict[str, Any]) -> int:
    """Broadcast, wait for every worker's task, print outputs by worker and a summary."""
    job = client.broadcast(**body)
    tasks = sorted(job["tasks"], key=lambda t: t["pinned_worker"] or "")
    err.print(f"job {job['id']}: {len(tasks)} worker(s)", highlight=False)
    ended = []
    try:
        for task in tasks:
            ended.append(client.wait(task["id"]))
    except KeyboardInterrupt:
        with contextlib.suppress(GridrunError):
            client.cancel_job(job["id"])  # (one request for all of its tasks)
        err.print(f"cancelled job {job['id']}")
        return 130
    for task in ended:
        sys.stdout.write(f"{visible(task['pinned_worker'] or '-')}:\n")
        sys.stdout.flush()
        streams: tuple[tuple[Literal["stdout", "stderr"], Any], ...] = (
            ("stdout", sys.stdout),
            ("stderr", sys.stderr),
        )
        for stream, sink in streams:
            data = client.output_bytes(task["id"], stream)
            if data:
                sink.buffer.write(data if data.endswith(b"\n") else data + b"\n")
                sink.buffer.flush()
    ok = [t for t in ended if t["state"] == TaskState.SUCCEEDED]
    bad = [f"{t['pinned_worker']}: {render.outcome(t)}" for t in ended if t not in ok]
    summary = f"{len(ended)} worker(s): {len(ok)} succeeded"
    if bad:
        summary += f", {len(bad)} did not (" + "; ".join(bad) + ")"
    say(summary)
    return 0 if not bad else 1


# ---- gridrun cancel --job/--state/...


def cancel_matching(filters: dict[str, Any], yes: bool, url: str | None, json_out: bool) -> None:
    """Cancel what matches, in one request; in a terminal, after saying how many and asking."""
    with guard, connect(url) as client:
        if not yes and sys.stdin.isatty() and sys.stdout.isatty():
            query = {k: v for k, v in filters.items() if k != "label"}
            many = _count_active(client, query, filters.get("label", []))
            said = " ".join(f"--{k} {v}" for k, v in filters.items())
            if not typer.confirm(f"cancel {many} task(s) not ended that match {said}?"):
                raise typer.Exit(1)
        done = client.cancel_matching(**filters)
    if json_out:
        print_json(done)
    else:
        print(f"{done['cancelled']:,} cancelled, {done['stopping']:,} stopping")


def _count_active(client: Client, query: dict[str, Any], labels: list[str]) -> str:
    """How many tasks not ended match (as the master will count them), for the question."""
    states = query.pop("state", None) or ["waiting", "queued", "assigned", "running"]
    total, cursor = 0, None
    while True:
        page, cursor = client.list_tasks(
            states=states, labels=labels, limit=1000, cursor=cursor, **query
        )
        total += len(page)
        if cursor is None or total >= 100_000:
            return f"{total:,}" + ("+" if cursor else "")
