"""How the CLI maps task outcomes to exit statuses, and parses addresses."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from gridrun.cli.render import exit_status, split_address, task_table


def task(**fields: Any) -> Any:
    base = {"state": "succeeded", "exit_code": None, "signal": None, "error": None}
    return {**base, **fields}


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"state": "succeeded", "exit_code": 0}, 0),
        ({"state": "failed", "exit_code": 3}, 3),
        ({"state": "failed", "signal": 9}, 137),
        ({"state": "timed_out", "signal": 15}, 143),
        ({"state": "timed_out"}, 124),
        ({"state": "cancelled"}, 130),
        ({"state": "lost"}, 255),
        ({"state": "rejected", "error": "not in this worker's allowlist"}, 126),
        ({"state": "expired"}, 124),
        ({"state": "failed", "error": "cannot run 'x'"}, 127),
    ],
)
def test_exit_status(fields: dict[str, Any], status: int) -> None:
    assert exit_status(task(**fields)) == status


def test_split_address() -> None:
    assert split_address("127.0.0.1:9092") == ("127.0.0.1", 9092)
    assert split_address("[::1]:50051") == ("::1", 50051)
    for bad in ("9092", "host:", ":80", "host:port"):
        with pytest.raises(ValueError, match="host:port"):
            split_address(bad)


def test_reconnect_backoff_has_full_jitter_and_a_cap() -> None:
    import random

    from gridrun.worker.agent import BACKOFF_CAP_S, backoff

    rng = random.Random(7)
    first = [backoff(1, rng) for _ in range(200)]
    assert max(first) <= 0.2
    assert min(first) >= 0
    late = [backoff(50, rng) for _ in range(200)]
    assert max(late) <= BACKOFF_CAP_S
    assert max(late) > BACKOFF_CAP_S * 0.9  # spread over the whole window, not fixed
    assert len({round(x, 6) for x in late}) > 150


def test_the_task_table_never_cuts_an_id_even_when_narrow() -> None:
    row = {
        "id": "019ac4a3f2b75c0e7d1a9f3b",
        "state": "queued",
        "exit_code": None,
        "signal": None,
        "worker_id": None,
        "created_at": "2026-11-28T03:00:00Z",
        "started_at": None,
        "finished_at": None,
        "name": "nightly",
        "cmd": "python3 prepare.py --input /data/raw --output /data/clean",
    }
    console = Console(width=60, record=True)
    console.print(task_table([row]))
    assert "019ac4a3f2b75c0e7d1a9f3b" in console.export_text()
