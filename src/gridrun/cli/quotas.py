"""`gridrun quota show|set`: a shared grid's limits per owner and per queue, and what each
owner and queue holds now."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gridrun.cli.common import JsonOut, Url, app, connect, guard, print_json
from gridrun.cli.render import cell, tsv
from gridrun.text import visible

quota_app = typer.Typer(
    help="Quotas per owner (a token's name) and per queue; they apply at once.",
    no_args_is_help=True,
)
app.add_typer(quota_app, name="quota")


class Scope(StrEnum):
    OWNER = "owner"
    QUEUE = "queue"


@quota_app.command("set")
def set_(
    scope: Annotated[Scope, typer.Argument(help="owner or queue.")],
    name: Annotated[str, typer.Argument(help="The owner's (token's) or the queue's name.")],
    max_queued: Annotated[
        int | None,
        typer.Option(min=0, help="Most tasks queued at once; beyond it submissions get 429."),
    ] = None,
    max_running: Annotated[
        int | None, typer.Option(min=0, help="Most tasks running at once; the rest wait.")
    ] = None,
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """Set (replace) the quota of an owner or a queue; with neither limit, remove it."""
    with guard, connect(url) as client:
        quota = client.set_quota(str(scope), name, max_queued, max_running)
    if json_out:
        print_json(quota)
        return
    limits = _limits(quota["max_queued"], quota["max_running"])
    print(f"{scope} {name}: {limits}" if limits else f"{scope} {name}: no quota")


@quota_app.command("show")
def show(url: Url = None, json_out: JsonOut = False) -> None:
    """The quotas set, and the tasks queued and running per owner and queue."""
    with guard, connect(url) as client:
        quotas, owners = client.quotas(), client.owners()
    if json_out:
        print_json({"quotas": quotas, "owners": owners})
        return
    if not sys.stdout.isatty():  # a pipe: the two lists as TSV, each under its header
        print(tsv(["SCOPE", "NAME", "MAX QUEUED", "MAX RUNNING"], [
            [q["scope"], q["name"], _n(q["max_queued"], ""), _n(q["max_running"], "")]
            for q in quotas
        ]))  # fmt: skip
        print()
        print(tsv(["OWNER", "QUEUE", "QUEUED", "ASSIGNED", "RUNNING"], [
            [o["owner"], o["queue"], str(o["queued"]), str(o.get("assigned", 0)),
             str(o["running"])]
            for o in owners
        ]))  # fmt: skip
        return
    console = Console()
    table = Table(
        "SCOPE", "NAME", "MAX QUEUED", "MAX RUNNING", title="quotas", title_justify="left"
    )
    for q in quotas:
        table.add_row(q["scope"], cell(q["name"]), _n(q["max_queued"]), _n(q["max_running"]))
    console.print(table if quotas else "no quotas")
    table = Table(
        "OWNER", "QUEUE", "QUEUED", "ASSIGNED", "RUNNING", title="now", title_justify="left"
    )
    for o in owners:
        table.add_row(
            cell(o["owner"]), cell(o["queue"]), str(o["queued"]), str(o.get("assigned", 0)),
            str(o["running"]),
        )  # fmt: skip
    console.print(table if owners else "nothing queued or running")


def _n(value: int | None, none: str = "-") -> str:
    """A limit for people (1,000; '-' for none), or for a pipe (1000; '' for none)."""
    if value is None:
        return none
    return f"{value:,}" if none == "-" else str(value)


def _limits(max_queued: int | None, max_running: int | None) -> str:
    parts = []
    if max_queued is not None:
        parts.append(f"at most {max_queued:,} queued")
    if max_running is not None:
        parts.append(f"at most {max_running:,} running")
    return ", ".join(parts)


concurrency_app = typer.Typer(
    help="Concurrency keys: each owner's own (set by its first task naming the key), or"
    " grid-wide ones an admin declares here, shared by every owner.",
    no_args_is_help=True,
)
app.add_typer(concurrency_app, name="concurrency")


@concurrency_app.command("set")
def concurrency_set(
    key: Annotated[str, typer.Argument(help="The key, as tasks name it (--concurrency KEY=N).")],
    limit: Annotated[int, typer.Argument(min=1, help="Most tasks naming it that run at once.")],
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """Declare a grid-wide key (admin): every owner's tasks naming KEY share it, at LIMIT."""
    with guard, connect(url) as client:
        client.set_concurrency_key(key, limit)
    if json_out:
        print_json({"key": key, "owner": None, "limit": limit})
    else:
        print(f"concurrency key {visible(key)}: grid-wide, at most {limit:,} at once")


@concurrency_app.command("rm")
def concurrency_rm(
    key: Annotated[str, typer.Argument(help="The grid-wide key.")],
    url: Url = None,
) -> None:
    """Remove a grid-wide key: from now on each owner's tasks naming it have a key of their own."""
    with guard, connect(url) as client:
        client.set_concurrency_key(key, None)
    print(f"concurrency key {visible(key)}: no longer grid-wide")


@concurrency_app.command("ls")
def concurrency_ls(url: Url = None, json_out: JsonOut = False) -> None:
    """The keys declared: grid-wide ones, and each owner's."""
    with guard, connect(url) as client:
        keys = client.concurrency_keys()
    if json_out:
        print_json(keys)
        return
    rows = [[k["key"], k["owner"] or "(grid-wide)", str(k["limit"])] for k in keys]
    if not sys.stdout.isatty():
        print(tsv(["KEY", "OWNER", "LIMIT"], rows))
        return
    table = Table("KEY", "OWNER", "LIMIT", box=None, header_style="bold")
    for row in rows:
        table.add_row(*(cell(c) for c in row))
    Console().print(table if keys else "no concurrency keys")
