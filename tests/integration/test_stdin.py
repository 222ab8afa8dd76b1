"""A task's stdin: given with the task (base64 over HTTP), stored with it, fed byte-exact to
every attempt from a file the spawner hands the process (both of its ways to start one), and
refused with a clear error when it is not base64 or too large."""

from __future__ import annotations

import base64

import pytest

from gridrun.spec import MAX_STDIN_BYTES
from tests.integration.conftest import Grid

pytestmark = pytest.mark.timeout(60)

DATA = b"line one\n\x00\xff binary too\nno newline at the end"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_a_task_reads_its_stdin_byte_exact(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(argv=["cat"], stdin_base64=b64(DATA))
    assert task["stdin_bytes"] == len(DATA)
    assert "stdin_base64" not in task  # (its content is never shown)
    done = await grid.wait(task["id"])
    assert done["state"] == "succeeded"
    assert await grid.raw_output(task["id"]) == DATA


async def test_every_attempt_reads_the_whole_stdin_again(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(
        cmd="cat; [ $GRIDRUN_ATTEMPT = 2 ]", shell=True, stdin_base64=b64(DATA),
        max_attempts=2, retry={"initial_s": 0},
    )  # fmt: skip
    done = await grid.wait(task["id"])
    assert (done["state"], done["attempt"]) == ("succeeded", 2)
    assert await grid.raw_output(task["id"]) == DATA  # the second attempt read it all


async def test_stdin_reaches_a_process_the_spawner_forks_as_well(grid: Grid) -> None:
    # an rlimit is set in a forked child (posix_spawn cannot): the other way to start one
    await grid.add_worker("w1", limit_open_files=64)
    task = await grid.submit(argv=["wc", "-l"], stdin_base64=b64(b"a\nb\nc\n"))
    await grid.wait(task["id"])
    assert (await grid.raw_output(task["id"])).strip() == b"3"


async def test_without_stdin_a_task_reads_nothing_and_ends(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(argv=["cat"])
    assert task["stdin_bytes"] == 0
    done = await grid.wait(task["id"])
    assert done["state"] == "succeeded"
    assert await grid.raw_output(task["id"]) == b""


async def test_stdin_that_is_not_base64_or_too_large_is_refused(grid: Grid) -> None:
    bad = await grid.api.post("/v1/tasks", json={"argv": ["cat"], "stdin_base64": "not base64!"})
    assert bad.status_code == 422, bad.text
    assert "stdin_base64 is not base64" in bad.text
    beyond = await grid.api.post("/v1/tasks", json={"argv": ["cat"], "stdin_base64": "\u00f1"})
    assert beyond.status_code == 422, beyond.text  # (a character beyond ASCII: it was a 500)
    big = b64(b"x" * (MAX_STDIN_BYTES + 1))
    large = await grid.api.post("/v1/tasks", json={"argv": ["cat"], "stdin_base64": big})
    assert large.status_code in (400, 422), large.text
    assert "stdin" in large.text
    listed = await grid.api.get("/v1/tasks")
    assert listed.json()["tasks"] == []  # nothing was queued
