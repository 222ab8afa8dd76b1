"""The worker's allowlist means what it says, tried as a task would get around it: loader
variables in its env, a symlink swapped between the check and the exec, a program of an allowed
name that the task wrote itself, a PATH of its own. Real workers, real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Grid

pytestmark = pytest.mark.timeout(180)

LOADER_SAID = ("calling init", "find library", "symbol=")  # what LD_DEBUG makes ld.so print


async def test_loader_variables_never_reach_an_allowlisted_program(grid: Grid) -> None:
    await grid.add_worker("locked", allow_shell=False, allow=["/usr/bin/echo"])
    for env in (
        {"LD_DEBUG": "libs,symbols"},
        {"LD_PRELOAD": "/nonexistent/x.so", "LD_DEBUG": "libs"},
        {"LD_LIBRARY_PATH": "/tmp", "LD_DEBUG": "all"},
        {"GLIBC_TUNABLES": "glibc.malloc.check=3", "LD_DEBUG": "libs"},
        {"PYTHONSTARTUP": "/tmp/x.py"},
        {"BASH_ENV": "/tmp/x.sh"},
        {"BASH_FUNC_echo%%": "() { id; }"},
        {"PATH": "/tmp:/usr/bin"},
    ):
        task = await grid.submit(argv=["/usr/bin/echo", "hello"], env=env)
        done = await grid.wait(task["id"])
        out = await grid.output(task["id"])
        said = out["stdout"]["text"] + out["stderr"]["text"]
        assert not any(word in said for word in LOADER_SAID), (env, said[:300])
        assert done["state"] == "rejected", (env, done)
        assert "makes programs load other code" in done["error"]
        assert any(name in done["error"] for name in env), done["error"]
    # as secrets too
    task = await grid.submit(argv=["/usr/bin/echo", "hi"], secret_env={"LD_DEBUG": "libs"})
    assert (await grid.wait(task["id"]))["state"] == "rejected"
    # a plain variable is fine
    task = await grid.submit(argv=["/usr/bin/echo", "hi"], env={"MODE": "fast"})
    assert (await grid.wait(task["id"]))["state"] == "succeeded"


async def test_without_an_allowlist_the_loader_variables_are_still_refused(grid: Grid) -> None:
    """The run-as and limit wrappers start as root: LD_PRELOAD there would run as root."""
    await grid.add_worker("open", allow_shell=True)
    task = await grid.submit(argv=["/usr/bin/echo", "x"], env={"LD_PRELOAD": "/tmp/x.so"})
    done = await grid.wait(task["id"])
    assert done["state"] == "rejected"
    assert "LD_PRELOAD" in done["error"]
    # what loads code only into a program the task chose anyway is its own business here
    task = await grid.submit(cmd='echo "$PYTHONPATH"', shell=True, env={"PYTHONPATH": "/srv/lib"})
    assert (await grid.wait(task["id"]))["state"] == "succeeded"
    assert (await grid.output(task["id"]))["stdout"]["text"] == "/srv/lib\n"


async def test_a_bare_name_admits_only_the_program_on_the_workers_path(
    grid: Grid, tmp_path: Path
) -> None:
    await grid.add_worker("named", allow_shell=False, allow=["echo"], cwd_roots=[str(tmp_path)])
    fake = tmp_path / "echo"
    marker = tmp_path / "fake-ran"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    for argv, cwd in (
        ([str(fake), "x"], None),  # a file of that name elsewhere
        (["./echo", "x"], str(tmp_path)),  # one the task wrote in its cwd
    ):
        task = await grid.submit(argv=argv, cwd=cwd)
        done = await grid.wait(task["id"])
        assert done["state"] == "rejected", (argv, done)
        assert "not in this worker's allowlist" in done["error"]
    assert not marker.exists()
    for argv in (["echo", "by name"], ["/usr/bin/echo", "by its path"]):
        task = await grid.submit(argv=argv)
        assert (await grid.wait(task["id"]))["state"] == "succeeded", argv


async def test_a_symlink_swapped_between_check_and_exec_never_runs_the_unchecked_file(
    grid: Grid, tmp_path: Path
) -> None:
    await grid.add_worker("racy", slots=4, allow_shell=False, allow=["/usr/bin/true"])
    evil = tmp_path / "evil"
    marker = tmp_path / "evil-ran"
    evil.write_text(f"#!/bin/sh\necho evil >> {marker}\n")
    evil.chmod(0o755)
    link = tmp_path / "prog"
    link.symlink_to("/usr/bin/true")
    flipper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            "link, a, b = sys.argv[1:4]\n"
            "end = time.monotonic() + 60\n"
            "while time.monotonic() < end:\n"
            "    for target in (a, b):\n"
            "        os.symlink(target, link + '.new')\n"
            "        os.replace(link + '.new', link)\n",
            str(link), "/usr/bin/true", str(evil),
        ],
    )  # fmt: skip
    try:
        tasks = await grid.submit_many([{"argv": [str(link)]} for _ in range(300)])
        states = [(await grid.wait(t["id"], timeout=60))["state"] for t in tasks]
    finally:
        flipper.kill()
        flipper.wait()
    # each ran what was checked (true), or was refused (it pointed at evil when checked)
    assert set(states) <= {"succeeded", "rejected"}, states
    assert states.count("succeeded") > 0
    assert states.count("rejected") > 0  # the swap really happened while tasks were checked
    assert not marker.exists(), marker.read_text()
