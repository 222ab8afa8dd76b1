"""A shared grid: what cannot run now never holds up what can (dispatch visits each shape of
task once, not every row), and every event that can make a task runnable wakes dispatch."""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import Grid

pytestmark = pytest.mark.slow


async def test_thousands_of_unplaceable_tasks_do_not_hold_up_plain_ones(grid: Grid) -> None:
    """12,000 tasks no worker here can take (a label nobody has, more GPUs than any worker,
    labels nobody has), queued first, then 20 plain ones: the plain ones run at once.
    (A pass used to scan 8,192 rows from the head of the queue and stop.)"""
    await grid.add_worker("w1", slots=2)
    await grid.add_worker("w2", slots=2)
    kinds = [{"on": "zone=nowhere"}, {"gpus": 8}, {"labels": {"rack": "r9"}}]
    for kind in kinds:
        for _ in range(4):
            await grid.submit_many([{"cmd": "true", "shell": True, **kind}] * 1000)
    began = time.monotonic()
    plain = await grid.submit_many([{"cmd": "true", "shell": True}] * 20)
    for task in plain:
        done = await grid.wait(task["id"], timeout=15)
        assert done["state"] == "succeeded"
    assert time.monotonic() - began < 15
    counts = (await grid.api.get("/v1/stats")).json()
    assert counts["tasks"]["queued"] == 12_000  # the rest still wait, untouched
