"""Jobs from the command line: `submit --array/--each-line/--from-json` (an array: one
durable submission), `gridrun job ls|show|cancel|retry`, and `gridrun wait` for tasks and
jobs, with the progress bar `submit --wait` and `--file` show."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gridrun.cli import render
from gridrun.cli.common import JsonOut, Url, app, connect, err, fail, guard, print_json, say
from gridrun.cli.options import TaskOptions
from gridrun.client import Client, JobDict
from gridrun.client.calls import TERMINAL
from gridrun.errors import TaskNotFound
from gridrun.model import TaskState
from gridrun.text import short_id, visible

POLL_S = 0.5
SHOWN = 10  # unsuccessful tasks named in a summary, the rest counted

job_app = typer.Typer(
    help="Jobs: arrays, --file batches and broadcasts, each shown, waited for, cancelled and"
    " retried as one.",
    no_args_is_help=True,
)
app.add_typer(job_app, name="job")


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


# ---- gridrun job ...


@job_app.command("ls")
def job_ls(
    owner: Annotated[str | None, typer.Option("--owner", help="Only this owner's.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 20,
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """List jobs, newest first: their size and how far they are."""
    with guard, connect(url) as client:
        jobs = client.jobs(limit, owner)
    if json_out:
        print_json(jobs)
        return
    headers = ["ID", "KIND", "TASKS", "ENDED", "OK", "NOT OK", "OWNER", "CREATED", "COMMAND"]
    rows = [
        [
            j["id"],
            j["kind"],
            str(j["size"]),
            str(j["ended"]),
            str(j["succeeded"]),
            str(j["ended"] - j["succeeded"]),
            j["owner"] or "-",
            render.when(j["created_at"]),
            (f"{j['name']}: " if j["name"] else "") + j["command"],
        ]
        for j in jobs
    ]
    if not sys.stdout.isatty():
        print(render.tsv(headers, rows))
        return
    if not jobs:
        print("no jobs")
        return
    for row in rows:  # a terminal: short ids (every command takes them back)
        row[0] = short_id(row[0])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        print("  ".join(visible(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


@job_app.command("show")
def job_show(job_id: str, url: Url = None, json_out: JsonOut = False) -> None:
    """One job: its tasks per state, progress, and which did not succeed (index, how)."""
    with guard, connect(url) as client:
        job = client.job(job_id, tasks=False)
    if json_out:
        print_json(job)
        return
    name = f" ({visible(job['name'])})" if job["name"] else ""
    print(f"job {job['id']}{name}: {job['kind']}, {job['size']:,} tasks, by {job['owner']}")
    print(f"  command: {visible(job['command'])}")
    if job["max_running"]:
        print(f"  at most {job['max_running']} at once")
    ended = job["ended"]
    share = f"{100 * ended / job['size']:.0f}%" if job["size"] else "-"
    print(f"  ended {ended:,} of {job['size']:,} ({share}); succeeded {job['succeeded']:,}")
    for state, n in job["counts"].items():
        if n:
            print(f"  {state:<10} {n:,}")
    for line in unsuccessful_lines(job):
        print(line)


@job_app.command("cancel")
def job_cancel(job_id: str, url: Url = None, json_out: JsonOut = False) -> None:
    """Cancel every task of a job that has not ended (running ones are stopped)."""
    with guard, connect(url) as client:
        done = client.cancel_job(job_id)
    if json_out:
        print_json(done)
    else:
        print(f"job {job_id}: {done['cancelled']:,} cancelled, {done['stopping']:,} stopping")


@job_app.command("retry")
def job_retry(
    job_id: str,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            "-s",
            help="Run again those in this state (repeatable; default: failed, timed_out,"
            " lost, cancelled).",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Then follow the job to its end.")] = False,
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """Run a job's tasks that did not succeed again, each as a new attempt (in the queue's
    quotas); the ones that succeeded are left as they are."""
    with guard, connect(url) as client:
        done = client.retry_job(job_id, state)
        if wait:
            err.print(f"job {job_id}: {done['retried']:,} tasks queued again", highlight=False)
            finish(follow_job(client, job_id, job_id), json_out)
    if json_out:
        print_json(done)
    else:
        print(f"job {job_id}: {done['retried']:,} tasks queued again")


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


# ---- gridrun wait


@app.command()
def wait(
    ids: Annotated[list[str], typer.Argument(help="Task or job ids.", metavar="ID...")],
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0, help="Give up after this many seconds (exit 124)."),
    ] = None,
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """Wait until every task and job named has ended: exit 0 if all succeeded, 1 (with a line
    naming what did not) otherwise, 124 if the timeout came first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    results: dict[str, Any] = {}
    with guard, connect(url) as client:
        for one in ids:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            results[one] = _wait_one(client, one, left)
    pending = [one for one, r in results.items() if not r["ended"]]
    bad = [one for one, r in results.items() if r["ended"] and not r["ok"]]
    if json_out:
        print_json(results)
    else:
        for one in bad:
            say(f"{one}: {results[one]['said']}")
        if pending:
            say(f"still running after {timeout:g}s: {' '.join(pending)}")
        elif not bad:
            say(f"all {len(ids)} succeeded" if len(ids) > 1 else f"{ids[0]} succeeded")
    raise typer.Exit(124 if pending else 1 if bad else 0)


def _wait_one(client: Client, one: str, timeout_s: float | None) -> dict[str, Any]:
    """A task (long-polled) or a job (polled): whether it ended, whether all succeeded, and
    what to say of it."""
    try:
        task = client.wait(one, timeout_s=timeout_s)
    except TaskNotFound:
        pass
    else:
        ended = task["state"] in TERMINAL
        ok = task["state"] == TaskState.SUCCEEDED
        return {"kind": "task", "ended": ended, "ok": ok, "said": render.outcome(task)}
    job = client.job(one, tasks=False)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while job["ended"] < job["size"] and (deadline is None or time.monotonic() < deadline):
        time.sleep(POLL_S)
        job = client.job(one, tasks=False)
    not_ok = job["ended"] - job["succeeded"]
    indexes = ", ".join(f"{t['index']} ({t['state']})" for t in job["unsuccessful"][:SHOWN])
    said = f"{not_ok:,} of {job['size']:,} tasks did not succeed" + (
        f": index {indexes}" if indexes else ""
    )
    return {
        "kind": "job",
        "ended": job["ended"] >= job["size"],
        "ok": not_ok == 0,
        "said": said,
        "job": job,
    }
