"""The client commands of tasks: submit, run, ls, show, logs, cancel (the fleet's are in
`fleet`, the jobs' in `jobs`)."""

from __future__ import annotations

import base64
import dataclasses
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from gridrun.cli import render
from gridrun.cli.batch import (
    cancel_matching,
    command_lines,
    read_items,
    run_everywhere,
    submit_array,
    submit_file,
)
from gridrun.cli.common import (
    COMMAND_CONTEXT,
    JsonOut,
    Url,
    app,
    connect,
    err,
    fail,
    guard,
    print_json,
    say,
)
from gridrun.cli.follow import Printer, WhyItWaits, epoch_ms, follow_output
from gridrun.cli.options import (
    NO_OPTIONS,
    Command,
    Name,
    TaskOptions,
    stdin_is_given,
    task_options,
)
from gridrun.client import Client, TaskDict, TaskOutput
from gridrun.errors import InvalidSpec
from gridrun.forms import parse_duration
from gridrun.model import Stream, TaskState
from gridrun.output import Segment, last_lines

# ---------------------------------------------------------------- tasks


def _submit(client: Client, command: list[str], options: TaskOptions) -> TaskDict:
    """Submit one command with the CLI's options."""
    if not command and options.script is None:
        fail("give a command, e.g. gridrun submit -- echo hello", 2)
    options.ship(client)
    return client.submit(**options.body(command))


@app.command(context_settings=COMMAND_CONTEXT)
@task_options
def submit(
    command: Command = None,
    options: TaskOptions = NO_OPTIONS,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="Submit every line of this file as a command (blank lines and # comments"
            " skipped; - for stdin), then show progress until all have ended.",
        ),
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="With --file: print the ids and return.")
    ] = False,
    array: Annotated[
        str | None,
        typer.Option(
            "--array",
            metavar="SPEC",
            help="An array job: one task per index, as Slurm's --array (1-100, 0-10:2,"
            " 2,8-10; %N: at most N at once), each given $GRIDRUN_ARRAY_INDEX. With"
            " --each-line/--from-json: which items. Prints the job's id.",
        ),
    ] = None,
    each_line: Annotated[
        Path | None,
        typer.Option(
            "--each-line",
            metavar="FILE",
            help="An array job: one task per line of FILE (- : stdin), given it in"
            " $GRIDRUN_ARRAY_ITEM as it is, without its newline.",
        ),
    ] = None,
    from_json: Annotated[
        Path | None,
        typer.Option(
            "--from-json",
            metavar="FILE",
            help="An array job: one task per item of the JSON array in FILE, given it in"
            " $GRIDRUN_ARRAY_ITEM as JSON.",
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Show progress until every task has ended; exit 0 if all succeeded, else 1.",
        ),
    ] = False,
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """Queue a command and print its task id (or a file of commands, with a progress bar; or
    an array of them, printing the job id)."""
    if array is not None or each_line is not None or from_json is not None:
        if file is not None:
            fail("give --file or an array (--array, --each-line, --from-json), not both", 2)
        items = read_items(each_line, from_json)
        with guard, connect(url) as client:
            submit_array(client, command or [], options, array, items, wait, json_out)
        return
    if file is not None:
        if command:
            fail("give either --file or a command, not both", 2)
        if str(file) == "-" and options.stdin == "-":
            fail("--file - and --stdin - cannot both read this command's stdin", 2)
        lines = command_lines(file)
        with guard, connect(url) as client:
            submit_file(client, file, lines, options, no_wait, json_out)
        return
    with guard, connect(url) as client:
        task = _submit(client, command or [], options)
        if wait:
            task = client.wait(task["id"])
        print_json(task) if json_out else print(task["id"])
    if wait:
        if not json_out and task["state"] != TaskState.SUCCEEDED:
            say(f"{task['id']}: {render.outcome(task)}")
        raise typer.Exit(0 if task["state"] == TaskState.SUCCEEDED else 1)


@app.command(context_settings=COMMAND_CONTEXT)
@task_options
def run(
    command: Command = None,
    options: TaskOptions = NO_OPTIONS,
    everywhere: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Run it once on every live worker that matches --on (a job); print each"
            " worker's output under its name and a summary; exit 1 if any did not succeed.",
        ),
    ] = False,
    no_stdin: Annotated[
        bool,
        typer.Option(
            "--no-stdin",
            help="Do not pass on this command's stdin (as ssh -n), e.g. in a loop that reads"
            " a file.",
        ),
    ] = False,
    url: Url = None,
) -> None:
    """Run a command on the grid, print its stdout and stderr, exit with its exit code. A
    pipe or file on its stdin is the task's stdin (printf 'a\\nb\\n' | gridrun run -- wc -l)."""
    if options.stdin is None and not no_stdin and stdin_is_given():
        options = dataclasses.replace(options, stdin="-")
    if everywhere:
        if not command and options.script is None:
            fail("give a command, e.g. gridrun run --all -- uptime", 2)
        with guard, connect(url) as client:
            options.ship(client)
            raise typer.Exit(run_everywhere(client, options.body(command or [])))
    with guard, connect(url) as client:
        task = _submit(client, command or [], options)
        watching = WhyItWaits(client.url, task["id"])
        try:
            task = follow_output(client, task["id"])
        except KeyboardInterrupt:
            client.cancel(task["id"])
            err.print(f"cancelled task {task['id']}")
            raise typer.Exit(130) from None
        finally:
            watching.stop()
        code = render.exit_status(task)
        plain_exit = (
            task["state"] in (TaskState.SUCCEEDED, TaskState.FAILED)
            and task["exit_code"] is not None
        )
        if not plain_exit or task["error"]:  # say why there is no ordinary exit code
            say(f"gridrun: task {task['id']} {render.outcome(task)}")
    raise typer.Exit(code)


@app.command("ls")
def list_tasks(
    state: Annotated[
        list[TaskState] | None,
        typer.Option(
            "--state",
            "-s",
            metavar="STATE",
            help="In this state (repeatable): " + ", ".join(TaskState) + ".",
        ),
    ] = None,
    worker: Annotated[str | None, typer.Option("--worker", "-w")] = None,
    name: Name = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Submitted by this token.")] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="In this queue.")] = None,
    job: Annotated[str | None, typer.Option("--job", help="Of this job.")] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            "-l",
            metavar="K=V",
            help="Whose labels include K=V (repeatable: all of them; submit --label sets them).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", metavar="WHEN", help="Created since: 90m, 2d (ago), or a UTC time."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="WHEN", help="Created before (as --since).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 20,
    sort: Annotated[
        render.SortKey,
        typer.Option(
            help="The --limit largest of all that match, by duration, cpu or memory (peak;"
            " the last two where measured); default: the newest.",
        ),
    ] = render.SortKey.CREATED,
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """List tasks, newest first (or by --sort)."""
    with guard, connect(url) as client:
        tasks, _ = client.list_tasks(
            states=[str(s) for s in state or []],
            worker=worker,
            name=name,
            owner=owner,
            queue=queue,
            job=job,
            labels=_labels(label or []),
            since=_when(since, "--since"),
            until=_when(until, "--until"),
            sort=str(sort) if sort is not render.SortKey.CREATED else None,
            limit=limit,
        )
    usage = sort in render.USAGE_KEYS
    if json_out:
        print_json(tasks)
    elif not sys.stdout.isatty():  # a pipe or a file: plain lines, nothing cut
        print(render.tsv(*render.task_rows(tasks, usage)))
    else:
        console = Console()
        console.print(render.task_table(tasks, console.width, usage=usage))


def _labels(given: list[str]) -> list[str]:
    """--label K=V, each checked here (a clear error, not the API's 422)."""
    for item in given:
        key, sep, _ = item.partition("=")
        if not sep or not key:
            fail(f"--label {item!r} must look like K=V", 2)
    return given


def _when(given: str | None, flag: str) -> str | None:
    """A --since/--until as the API takes it: a duration ago (90m, 2d) or a time (UTC unless
    it says otherwise), as ISO 8601."""
    if given is None:
        return None
    try:
        ago = parse_duration(given, flag)
    except InvalidSpec:
        try:
            at = datetime.fromisoformat(given)
        except ValueError:
            fail(f"{flag} {given!r}: give a duration ago (90m, 2d) or a time (2026-12-07T06:00)", 2)
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()
    return (datetime.now(UTC) - timedelta(seconds=ago)).isoformat()


@app.command()
def show(task_id: str, url: Url = None, json_out: JsonOut = False) -> None:
    """Show one task: spec, state, result."""
    with guard, connect(url) as client:
        task = client.get(task_id)
    if json_out:
        print_json(task)
    else:
        console = Console()
        console.print(render.task_detail(task))
        if (attempts := render.attempt_table(task)) is not None:
            console.print(attempts)


@app.command()
def logs(
    task_id: str,
    stream: Annotated[str, typer.Option(help="stdout, stderr or both.")] = "both",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing as it runs, until it ends.")
    ] = False,
    timestamps: Annotated[
        bool,
        typer.Option("--timestamps", "-t", help="Begin each line with when it was written (UTC)."),
    ] = False,
    tail: Annotated[
        int | None,
        typer.Option(min=0, metavar="N", help="Only the last N lines (with -f: then follow)."),
    ] = None,
    index: Annotated[
        int | None,
        typer.Option("--index", min=0, metavar="N", help="The ID is a job's: its task at index N."),
    ] = None,
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """Print a task's stored output in the order it was written: stdout's to stdout, stderr's
    to stderr, the bytes exactly."""
    if stream not in ("stdout", "stderr", "both"):
        fail("--stream must be stdout, stderr or both", 2)
    if follow and (json_out or stream != "both"):
        fail("--follow prints both streams as text; it takes neither --json nor --stream", 2)
    with guard, connect(url) as client:
        if index is not None:
            found, _ = client.list_tasks(job=task_id, index=index, limit=1)
            if not found:
                client.job(task_id, tasks=False)  # (no such job: its own error)
                fail(f"job {task_id} has no task at index {index}")
            task_id = found[0]["id"]
        if json_out:
            print_json(client.output(task_id) if tail is None else client.segments(task_id, tail))
            return
        printer = Printer(timestamps)
        if stream != "both" and tail is None and not timestamps:
            raw: Literal["stdout", "stderr"] = "stdout" if stream == "stdout" else "stderr"
            _say_expired(task_id, client.output(task_id), stream)
            printer.write(stream, client.output_bytes(task_id, raw))
            return
        got = client.segments(task_id, tail if stream == "both" else None)
        _say_expired(task_id, got, stream)
        segments = [
            Segment(Stream.STDOUT if s["stream"] == "stdout" else Stream.STDERR, s["offset"],
                    base64.b64decode(s["data_base64"]), epoch_ms(s["at"]))
            for s in got["segments"] if stream in (s["stream"], "both")
        ]  # fmt: skip
        if tail is not None and stream != "both":
            segments = last_lines(segments, tail)
        for segment in segments:
            name = "stdout" if segment.stream is Stream.STDOUT else "stderr"
            printer.write(name, segment.data, segment.at)
        if follow:
            start = {"stdout": got["stdout"]["bytes_total"], "stderr": got["stderr"]["bytes_total"]}
            follow_output(client, task_id, start, printer)


def _say_expired(task_id: str, output: TaskOutput, stream: str) -> None:
    for name in ("stdout", "stderr"):
        kept = output["stdout"] if name == "stdout" else output["stderr"]
        if kept.get("expired") and stream in (name, "both"):
            err.print(
                f"gridrun: the {name} of {task_id} expired ({kept['bytes_total']} bytes"
                " were dropped to keep within the grid's --output-budget)",
                highlight=False,
            )


@app.command()
def cancel(
    task_id: Annotated[str | None, typer.Argument(help="A task's id.")] = None,
    job: Annotated[str | None, typer.Option("--job", help="Every task of this job.")] = None,
    state: Annotated[
        list[str] | None,
        typer.Option("--state", "-s", help="In this state (waiting, queued, assigned, running)."),
    ] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Submitted by this token.")] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="In this queue.")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", metavar="K=V", help="With this label.")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask (a terminal asks before a filter).")
    ] = False,
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """Cancel a task: a queued one at once, a running one by killing its process group. Or,
    with --job/--state/--owner/--queue/--label, every task that matches them all, in one
    request (your own unless you are an admin)."""
    filters = {
        "job": job, "state": state, "owner": owner, "queue": queue, "label": _labels(label or [])
    }  # fmt: skip
    given = {k: v for k, v in filters.items() if v}
    if given:
        if task_id is not None:
            fail("give a task id or filters (--job, --state, ...), not both", 2)
        cancel_matching(given, yes, url, json_out)
        return
    if task_id is None:
        fail("give a task id, or filters: gridrun cancel --job JOB | --state queued ...", 2)
    with guard, connect(url) as client:
        task = client.cancel(task_id)
    if json_out:
        print_json(task)
    elif task["state"] == TaskState.CANCELLED:
        print(f"{task_id} cancelled")
    else:
        print(f"{task_id} is {task['state']}: cancel sent to worker {task['worker_id']}")
