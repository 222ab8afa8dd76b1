"""What a task's result records: exit code or signal, output, timings, timeouts, spawn errors."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Grid

pytestmark = pytest.mark.timeout(60)


async def test_exit_code_stdout_and_stderr_are_kept_apart(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(cmd="sh -c 'echo out; echo err >&2; exit 3'")
    done = await grid.wait(task["id"])
    assert done["state"] == "failed"
    assert done["exit_code"] == 3
    assert done["signal"] is None
    assert done["worker_id"] == "w1"
    assert done["started_at"] <= done["finished_at"]
    out = await grid.output(task["id"])
    assert out["stdout"]["text"] == "out\n"
    assert out["stderr"]["text"] == "err\n"
    raw = await grid.api.get(f"/v1/tasks/{task['id']}/output", params={"stream": "stderr"})
    assert raw.content == b"err\n"


async def test_success_and_argv_are_not_split_on_spaces(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(argv=["printf", "%s|", "a b", "c"])
    done = await grid.wait(task["id"])
    assert done["state"] == "succeeded"
    assert done["exit_code"] == 0
    assert (await grid.output(task["id"]))["stdout"]["text"] == "a b|c|"


async def test_cmd_is_split_like_a_shell_would(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(cmd="""printf '%s|' "one two" three""")
    assert task["argv"] == ["printf", "%s|", "one two", "three"]
    await grid.wait(task["id"])
    assert (await grid.output(task["id"]))["stdout"]["text"] == "one two|three|"


async def test_a_task_killed_by_a_signal_reports_the_signal(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(cmd="kill -9 $$", shell=True)
    done = await grid.wait(task["id"])
    assert done["state"] == "failed"
    assert done["exit_code"] is None
    assert done["signal"] == 9


async def test_shell_env_and_cwd_reach_the_process(grid: Grid, tmp_path) -> None:  # type: ignore[no-untyped-def]
    await grid.add_worker("w1")
    task = await grid.submit(
        cmd='echo "$GREETING from $(pwd) as $GRIDRUN_TASK_ID"',
        shell=True,
        env={"GREETING": "hi"},
        cwd=str(tmp_path),
    )
    await grid.wait(task["id"])
    text = (await grid.output(task["id"]))["stdout"]["text"]
    assert text == f"hi from {tmp_path} as {task['id']}\n"


async def test_timeout_kills_the_task_and_ends_timed_out(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(cmd="sleep 30", timeout_s=0.5)
    done = await grid.wait(task["id"])
    assert done["state"] == "timed_out"
    assert done["signal"] == 15  # SIGTERM was enough for sleep
    assert "timed out" in done["error"]


async def test_a_program_that_does_not_exist_fails_with_a_reason(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(cmd="no-such-program-gridrun --flag")
    done = await grid.wait(task["id"])
    assert done["state"] == "failed"
    assert done["exit_code"] is None
    assert "no-such-program-gridrun" in done["error"]
    # a missing working directory is the same kind of failure, with its own reason
    task = await grid.submit(cmd="true", cwd="/nonexistent/dir")
    done = await grid.wait(task["id"])
    assert done["state"] == "failed"
    assert "/nonexistent/dir" in done["error"]


async def test_output_keeps_the_tail_and_counts_what_was_dropped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    grid = Grid(tmp=tmp_path)
    await grid.start_master(output_cap=1000)
    try:
        await grid.add_worker("w1")
        # 5000 bytes in several writes, spread over time so they arrive in many chunks
        script = "for i in $(seq 0 49); do printf '%099d\\n' $i; sleep 0.002; done"
        task = await grid.submit(cmd=script, shell=True)
        await grid.wait(task["id"])
        out = (await grid.output(task["id"]))["stdout"]
        assert out["bytes_total"] == 5000
        assert out["bytes_dropped"] == 4000
        expected = "".join(f"{i:099d}\n" for i in range(40, 50))
        assert out["text"] == expected
    finally:
        await grid.close()


async def test_binary_output_is_stored_byte_for_byte(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(
        argv=["python3", "-c", "import sys; sys.stdout.buffer.write(bytes(range(256)) * 3)"]
    )
    await grid.wait(task["id"])
    raw = await grid.api.get(f"/v1/tasks/{task['id']}/output", params={"stream": "stdout"})
    assert raw.content == bytes(range(256)) * 3
    assert raw.headers["x-gridrun-bytes-total"] == "768"
