"""Output in the order it was written (issue 33, item 3): a real worker marks where each run of
output began across stdout and stderr, the master keeps the marks with the output, and the API
(`/output/segments`, `?tail=`) and the live follow give the two streams back interleaved as
written: across a master restart too, for what was written while no master listened."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually_async
from tests.integration.conftest import Grid

pytestmark = pytest.mark.timeout(90)
PAUSE = "sleep 0.3"  # between writes: longer than the worker takes to read a pipe


def _runs(segments: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """The segments merged where one stream runs on (a run may be marked again a second on)."""
    merged: list[tuple[str, bytes]] = []
    for s in segments:
        data = base64.b64decode(s["data_base64"])
        if merged and merged[-1][0] == s["stream"]:
            merged[-1] = (s["stream"], merged[-1][1] + data)
        else:
            merged.append((s["stream"], data))
    return merged


async def segments(grid: Grid, task_id: str, **params: Any) -> dict[str, Any]:
    answer = await grid.api.get(f"/v1/tasks/{task_id}/output/segments", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_output_comes_back_in_the_order_it_was_written(grid: Grid) -> None:
    await grid.add_worker("w1")
    script = f"echo o1; {PAUSE}; echo e1 >&2; {PAUSE}; echo o2; {PAUSE}; echo e2 >&2; {PAUSE}"
    task = await grid.submit(cmd=script + "; echo o3", shell=True)
    assert (await grid.wait(task["id"]))["state"] == "succeeded"
    got = await segments(grid, task["id"])
    assert _runs(got["segments"]) == [
        ("stdout", b"o1\n"), ("stderr", b"e1\n"), ("stdout", b"o2\n"), ("stderr", b"e2\n"),
        ("stdout", b"o3\n"),
    ]  # fmt: skip
    times = [datetime.fromisoformat(s["at"]) for s in got["segments"]]
    assert times == sorted(times)  # each run stamped when the worker read it
    assert (times[-1] - times[0]).total_seconds() >= 0.9  # four pauses apart
    # the streams themselves are unchanged, byte-exact
    assert await grid.raw_output(task["id"], "stdout") == b"o1\no2\no3\n"
    assert await grid.raw_output(task["id"], "stderr") == b"e1\ne2\n"
    # the last lines, across both streams
    tail = await segments(grid, task["id"], tail=2)
    assert _runs(tail["segments"]) == [("stderr", b"e2\n"), ("stdout", b"o3\n")]
    bad = await grid.api.get(f"/v1/tasks/{task['id']}/output/segments?tail=-1")
    assert bad.status_code == 422


async def test_the_live_follow_sends_output_in_the_order_it_was_written(grid: Grid) -> None:
    await grid.add_worker("w1")
    task = await grid.submit(cmd=f"echo o1; {PAUSE}; echo e1 >&2; {PAUSE}; echo o2", shell=True)
    assert (await grid.wait(task["id"]))["state"] == "succeeded"
    # a follower that comes after the end is sent the stored output, in order, with its times
    events = []
    async with grid.api.stream(
        "GET", f"/v1/tasks/{task['id']}/output", params={"follow": "true"}
    ) as answer:
        async for line in answer.aiter_lines():
            if line.startswith("data: ") and '"stream"' in line:
                events.append(json.loads(line[6:]))
    assert [(e["stream"], e["text"]) for e in events] == [
        ("stdout", "o1\n"), ("stderr", "e1\n"), ("stdout", "o2\n"),
    ]  # fmt: skip
    assert all(isinstance(e["at"], int) and e["at"] > 0 for e in events)


async def test_the_order_holds_across_a_master_restart(grid: Grid, tmp_path: Path) -> None:
    grid.master_overrides["liveness_timeout_s"] = 20.0  # (the worker is back well before)
    await grid.stop_master()
    await grid.start_master()
    agent = await grid.add_worker("w1")
    gate, half = tmp_path / "gate", tmp_path / "half"
    wait_gate = f"while [ ! -e {gate} ]; do sleep 0.02; done"
    script = (
        f"echo o1; {PAUSE}; echo e1 >&2; {PAUSE}; touch {half}; {wait_gate};"
        f" echo e2 >&2; {PAUSE}; echo o2; {PAUSE}; echo e3 >&2"
    )
    task = await grid.submit(cmd=script, shell=True)
    await eventually_async(half.exists)
    await eventually_async(lambda: _has(grid, task["id"], b"e1\n"))
    await grid.stop_master()  # what follows is written with no master to tell
    gate.touch()
    await eventually_async(lambda: not agent.executions, 10)  # it ended meanwhile
    await grid.start_master()
    assert (await grid.wait(task["id"], timeout=30))["state"] == "succeeded"
    got = await segments(grid, task["id"])
    assert _runs(got["segments"]) == [
        ("stdout", b"o1\n"), ("stderr", b"e1\ne2\n"), ("stdout", b"o2\n"), ("stderr", b"e3\n"),
    ]  # fmt: skip


async def _has(grid: Grid, task_id: str, data: bytes) -> bool:
    return data in await grid.raw_output(task_id, "stderr")
