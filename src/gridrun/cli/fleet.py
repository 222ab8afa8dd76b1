"""The fleet from the command line: drain a worker, list the workers, and `top`, the live
view of the grid (a whole frame per interval into a pipe, `--json` a line a frame)."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live

from gridrun.cli import render
from gridrun.cli.common import JsonOut, Url, app, connect, guard, print_json


@app.command()
def drain(worker_id: str, url: Url = None, json_out: JsonOut = False) -> None:
    """Drain a worker: it takes nothing new, finishes its tasks, then exits."""
    with guard, connect(url) as client:
        worker_row = client.drain(worker_id)
    if json_out:
        print_json(worker_row)
    else:
        print(f"{worker_id} is draining: it finishes its running tasks, then exits")


@app.command()
def top(
    interval: Annotated[
        float, typer.Option("--interval", "-i", min=0.2, help="Seconds between refreshes.")
    ] = 1.0,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="Recent tasks.")] = 15,
    once: Annotated[bool, typer.Option("--once", help="One frame, then exit.")] = False,
    url: Url = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="One JSON object a frame, one a line (at, tasks, workers, owners, recent).",
        ),
    ] = False,
) -> None:
    """A live view of the grid: tasks per state, workers, tasks queued and running per owner
    and queue, the most recent tasks. Ctrl-C quits. Into a pipe: a whole frame each
    interval; --json: a JSON line each."""
    console = Console()
    with guard, connect(url) as client:

        def snapshot() -> dict[str, Any]:
            recent, _ = client.list_tasks(limit=limit)
            return {
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "tasks": client.stats()["tasks"],
                "workers": client.workers(),
                "owners": client.owners(),
                "recent": recent,
            }

        def frame() -> Group:
            now = snapshot()
            return render.top_frame(
                f"{client.url}  {time.strftime('%H:%M:%S')}",
                now["tasks"], now["workers"], now["owners"], now["recent"], console.width,
                short=sys.stdout.isatty(),  # (a pipe, a file: whole ids)
            )  # fmt: skip

        try:
            if json_out:
                while True:
                    print(json.dumps(snapshot(), separators=(",", ":")), flush=True)
                    if once:
                        return
                    time.sleep(interval)
            if once or not sys.stdout.isatty():  # a pipe or a file: one whole frame per interval
                plain = Console(width=max(console.width, 160), color_system=None)
                plain = plain if not sys.stdout.isatty() else console
                while True:
                    plain.print(frame())
                    print(flush=True)
                    if once:
                        return
                    time.sleep(interval)
            with Live(frame(), console=console, auto_refresh=False) as live:
                while True:
                    time.sleep(interval)
                    live.update(frame(), refresh=True)
        except (KeyboardInterrupt, BrokenPipeError):
            pass


@app.command()
def workers(url: Url = None, json_out: JsonOut = False) -> None:
    """List workers: state, slots, running tasks, labels."""
    with guard, connect(url) as client:
        rows = client.workers()
    if json_out:
        print_json(rows)
    elif not sys.stdout.isatty():  # a pipe or a file: plain lines, nothing cut
        print(render.tsv(*render.worker_rows(rows)))
    else:
        Console().print(render.worker_table(rows))
