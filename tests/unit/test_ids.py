"""Task ids: unique, and ordered by creation time so new rows go to the end of the id index."""

from __future__ import annotations

import re
import time

from gridrun.master.core.ids import new_task_id, new_task_ids


def test_ids_are_unique_hex_and_start_with_the_time_in_ms() -> None:
    before = time.time_ns() // 1_000_000
    ids = new_task_ids(10_000)
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 10_000
    for task_id in ids[:100]:
        assert re.fullmatch("[0-9a-f]{24}", task_id), task_id
        assert before <= int(task_id[:12], 16) <= after


def test_later_ids_sort_after_earlier_ones() -> None:
    first = new_task_ids(50)
    time.sleep(0.002)
    second = [new_task_id() for _ in range(50)]
    assert max(first) < min(second)
    assert len({t[12:] for t in first + second}) == 100  # the random part differs
