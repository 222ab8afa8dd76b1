"""A task's files in the CLI: the local files `--input` and `--input-dir` name (hashed, then
uploaded once before the task is submitted), and the commands that read what was collected:
`gridrun files TASK` and `gridrun cp TASK:PATH DEST` (`-`: stdout; `TASK:`: every file;
`JOB:PATH`: that file of each of an array's tasks, by index)."""

from __future__ import annotations

import functools
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gridrun.cli import render
from gridrun.cli.common import JsonOut, Url, app, connect, fail, guard, print_json, say
from gridrun.client import Client
from gridrun.errors import GridrunError, InvalidSpec, JobNotFound, TaskNotFound
from gridrun.files import check_path, sha256_of


@dataclass(frozen=True, slots=True)
class LocalInput:
    path: Path
    name: str
    mode: int


def local_inputs(inputs: list[str] | None, dirs: list[str] | None) -> list[LocalInput]:
    """The files `--input LOCAL[:NAME]` and `--input-dir DIR[:NAME]` name, checked (a clear
    message and exit 2 for a missing file, a directory given to --input, a symlink, a bad
    name)."""
    found: list[LocalInput] = []
    for given in inputs or ():
        path, name = _split(given)  # (a link named here is followed: it is the user's own)
        if not path.exists():
            fail(f"--input {given}: no such file: {path}", 2)
        if path.is_dir():
            fail(f"--input {given}: {path} is a directory (give it with --input-dir)", 2)
        found.append(LocalInput(path, _name(name or path.name, given), _mode(path)))
    for given in dirs or ():
        root, name = _split(given)
        if not root.is_dir():
            fail(f"--input-dir {given}: no such directory: {root}", 2)
        prefix = name or root.resolve().name
        for top, subdirs, names in os.walk(root):
            subdirs.sort()
            for entry in sorted(names) + [d for d in subdirs if Path(top, d).is_symlink()]:
                path = Path(top, entry)
                rel = path.relative_to(root).as_posix()
                if path.is_symlink():
                    fail(
                        f"--input-dir {given}: {rel} is a symlink: give the file it points to"
                        " with --input",
                        2,
                    )
                if path.is_file():
                    found.append(LocalInput(path, _name(f"{prefix}/{rel}", given), _mode(path)))
    names = [f.name for f in found]
    for name in names:
        if names.count(name) > 1:
            fail(f"two inputs are named {name!r}: give one of them another (LOCAL:NAME)", 2)
    return found


def _split(given: str) -> tuple[Path, str]:
    """LOCAL or LOCAL:NAME (a LOCAL that exists as given keeps its colons)."""
    if Path(given).exists() or ":" not in given:
        return Path(given), ""
    local, _, name = given.rpartition(":")
    return Path(local), name


def _name(name: str, given: str) -> str:
    try:
        return check_path(name, "an input's name")
    except InvalidSpec as exc:
        fail(f"{given}: {exc.message}", 2)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@functools.cache
def _digest(path: Path, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # (the cache's key: a file changed since is hashed again)
    return sha256_of(path)


def digest_of(path: Path) -> str:
    info = path.stat()
    return _digest(path, info.st_size, info.st_mtime_ns)


def inputs_body(found: list[LocalInput]) -> list[dict[str, object]]:
    """The inputs as POST /v1/tasks names them."""
    return [{"name": f.name, "sha256": digest_of(f.path), "mode": f.mode} for f in found]


def ship_inputs(client: Client, found: list[LocalInput]) -> None:
    """Upload each input the master does not hold yet (each file once)."""
    for path in dict.fromkeys(f.path for f in found):
        client.upload_input(path)


# ---------------------------------------------------------------- files, cp


@app.command("files")
def list_files(
    task_id: Annotated[str, typer.Argument(metavar="TASK")],
    url: Url = None,
    json_out: JsonOut = False,
) -> None:
    """The files collected from a task's attempts: path, size, sha256, and whether each is
    complete (or incomplete, or dropped, and why)."""
    with guard, connect(url) as client:
        files = client.files(task_id)
    if json_out:
        print_json(files)
        return
    if not files:
        say(f"task {task_id} has no collected files")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("ATTEMPT", "PATH", "SIZE", "SHA256", "STATE"):
        table.add_column(column, no_wrap=column != "STATE")
    for f in files:
        state = f["state"] if not f["reason"] else f"{f['state']}: {f['reason']}"
        table.add_row(
            str(f["attempt"]),
            render.cell(f["path"]),
            render.size(f["size"]),
            f["sha256"][:12],
            render.cell(state),
        )
    Console().print(table)


@app.command("cp")
def copy(
    source: Annotated[str, typer.Argument(metavar="TASK:PATH|TASK:|JOB:PATH")],
    dest: Annotated[str, typer.Argument(metavar="DEST|-")],
    attempt: Annotated[
        int | None, typer.Option("--attempt", help="That attempt's file (default: the latest).")
    ] = None,
    url: Url = None,
) -> None:
    """Copy a collected file out: to DEST (a file, or a directory to put it in), or to stdout
    with -. TASK: copies every complete file of the task into the directory DEST; JOB:PATH
    that file of each of an array's tasks to DEST/INDEX/PATH."""
    owner_id, sep, path = source.partition(":")
    if not sep or not owner_id:
        fail(f"{source}: give TASK:PATH (or TASK: for all, JOB:PATH for a job's)", 2)
    if path:
        try:
            check_path(path, "the file's path")
        except InvalidSpec as exc:
            fail(exc.message, 2)
    with guard, connect(url) as client:
        try:
            client.get(owner_id)
        except TaskNotFound:
            try:
                job = client.job(owner_id)
            except JobNotFound:
                fail(f"no task or job with id {owner_id!r}")
            if not path or dest == "-":
                fail("a job's files go into a directory: gridrun cp JOB:PATH DIR", 2)
            missing = 0
            for task in job["tasks"]:
                index = task["job_index"] if task["job_index"] is not None else task["id"]
                try:
                    _copy_one(client, task["id"], path, Path(dest) / str(index) / path, attempt)
                except GridrunError as exc:
                    missing += 1
                    say(f"{index} ({task['id']}): {exc.message}")
            if missing:
                fail(f"{missing} of {len(job['tasks'])} tasks' {path} not copied")
            return
        if not path:
            if dest == "-":
                fail("all of a task's files go into a directory: gridrun cp TASK: DIR", 2)
            files = [f for f in client.files(owner_id) if f["state"] == "complete"]
            latest = max((f["attempt"] for f in files), default=0)
            for f in files:
                if f["attempt"] == (attempt or latest):
                    _copy_one(client, owner_id, f["path"], Path(dest) / f["path"], f["attempt"])
            return
        if dest == "-":
            client.download(owner_id, path, sys.stdout.buffer, attempt=attempt)
            sys.stdout.buffer.flush()
            return
        target = Path(dest)
        if target.is_dir():
            target = target / Path(path).name
        _copy_one(client, owner_id, path, target, attempt)


def _copy_one(client: Client, task_id: str, path: str, target: Path, attempt: int | None) -> None:
    """Download into a temporary file beside `target`, then rename: never a half file."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot make {target.parent}: {exc.strerror}")
    partial = target.with_name(f".{target.name}.partial")
    try:
        with open(partial, "wb") as f:
            client.download(task_id, path, f, attempt=attempt)
        partial.replace(target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        fail(f"cannot write {target}: {exc.strerror}")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
