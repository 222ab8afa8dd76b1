"""Jobs from the command line: `gridrun job ls|show|cancel|retry`, and `gridrun wait` for
tasks and jobs. Submitting many tasks as one job, and following one, is `batch`'s."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from gridrun.cli import render
from gridrun.cli.batch import POLL_S, SHOWN, finish, follow_job, unsuccessful_lines
from gridrun.cli.common import JsonOut, Url, app, connect, err, guard, print_json, say
from gridrun.client import Client
from gridrun.client.calls import TERMINAL
from gridrun.errors import TaskNotFound
from gridrun.model import TaskState
from gridrun.text import short_id, visible

job_app = typer.Typer(
    help="Jobs: arrays, --file batches and broadcasts, each shown, waited for, cancelled and"
    " retried as one.",
    no_args_is_help=True,
)
app.add_typer(job_app, name="job")


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
