"""A script shipped with a task (`script_base64`, the CLI's --script): run as a file on the
worker by the interpreter its #! line names (else /bin/sh), argv its arguments, as the task's
own identity; counted as a shell task by worker policy; refused with a clear error when it
cannot be one."""

from __future__ import annotations

import base64

import pytest

from tests.integration.conftest import Grid

pytestmark = pytest.mark.timeout(60)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_a_script_runs_by_its_interpreter_with_its_arguments_and_stdin(grid: Grid) -> None:
    await grid.add_worker("w1")
    script = b'#!/bin/sh -e\nprintf "%s|" "$@"\necho "uid $(id -u)"\nwc -l\n'
    task = await grid.submit(
        argv=["one", "two words"], script_base64=b64(script), stdin_base64=b64(b"a\nb\n")
    )
    assert (task["script_bytes"], task["argv"], task["cmd"]) == (
        len(script),
        ["one", "two words"],
        None,
    )
    done = await grid.wait(task["id"])
    assert done["state"] == "succeeded", done
    out = (await grid.raw_output(task["id"])).decode()
    first, count = out.splitlines()
    assert first.startswith("one|two words|uid ")
    assert count.strip() == "2"


async def test_a_script_without_a_hashbang_line_is_read_by_sh(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(argv=[], script_base64=b64(b'echo "no #! line, $# args"\n'))
    await grid.wait(task["id"])
    assert await grid.raw_output(task["id"]) == b"no #! line, 0 args\n"


async def test_a_worker_that_runs_no_shell_tasks_rejects_a_script(grid: Grid) -> None:
    await grid.add_worker("w1", allow_shell=False)
    task = await grid.submit(argv=[], script_base64=b64(b"echo hi\n"))
    done = await grid.wait(task["id"])
    assert done["state"] == "rejected"
    assert "--allow-shell" in done["error"]


async def test_a_script_that_cannot_be_one_is_refused(grid: Grid) -> None:
    for body, why in (
        ({"cmd": "x", "script_base64": b64(b"echo\n")}, "not cmd or shell"),
        ({"argv": [], "shell": True, "script_base64": b64(b"echo\n")}, "not cmd or shell"),
        ({"argv": [], "script_base64": ""}, "script is empty"),
        ({"argv": [], "script_base64": "%%%"}, "script_base64 is not base64"),
    ):
        answer = await grid.api.post("/v1/tasks", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert why in answer.text, (body, answer.text)
    assert (await grid.api.get("/v1/tasks")).json()["tasks"] == []
