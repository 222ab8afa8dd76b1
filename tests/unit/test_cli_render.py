"""How the CLI maps task outcomes to exit statuses, and parses addresses."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from gridrun.cli.render import (
    attempt_table,
    exit_status,
    size,
    task_rows,
    task_table,
    tsv,
)
from gridrun.forms import split_address


def task(**fields: Any) -> Any:
    base = {"state": "succeeded", "exit_code": None, "signal": None, "error": None}
    return {**base, **fields}


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"state": "succeeded", "exit_code": 0}, 0),
        ({"state": "failed", "exit_code": 3}, 3),
        ({"state": "failed", "signal": 9}, 137),
        ({"state": "timed_out", "signal": 15}, 124),  # as GNU timeout, not 128+15
        ({"state": "timed_out", "exit_code": 143}, 124),
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


def test_the_task_table_never_cuts_a_short_id_even_when_narrow() -> None:
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
    console.print(task_table([row], console.width))
    shown = console.export_text()
    assert "7d1a9f3b " in shown  # its short id: the tail of its digits (every command takes it)
    assert "019ac4a3f2b7" not in shown
    console = Console(width=60, record=True)  # whole where asked (top into a pipe)
    console.print(task_table([row], console.width, short=False))
    assert "019ac4a3f2b75c0e7d1a9f3b" in console.export_text()


def test_sizes_read_as_ls_h_shows_them() -> None:
    assert [size(n) for n in (None, 0, 1023, 1024, 70 * 1024 * 1024, 3 << 40)] == [
        "-", "0 B", "1023 B", "1.0 KiB", "70.0 MiB", "3.0 TiB"
    ]  # fmt: skip


def test_an_attempt_that_was_measured_shows_its_cpu_and_peak_memory() -> None:
    attempt = {
        "attempt": 1, "worker_id": "w1", "state": "succeeded", "assigned_at": "x",
        "started_at": None, "finished_at": None, "exit_code": 0, "signal": None,
        "error": None, "cpu_s": 1.234, "peak_memory_bytes": 70 * 1024 * 1024,
    }  # fmt: skip
    table = attempt_table(task(attempts=[attempt]))
    assert table is not None
    console = Console(width=120, record=True)
    console.print(table)
    text = console.export_text()
    for shown in ("CPU", "PEAK MEM", "1.23s", "70.0 MiB"):
        assert shown in text, text
    assert attempt_table(task(attempts=[{**attempt, "cpu_s": None}])) is None  # one, unmeasured


def listed(task_id: str, state: str, **fields: Any) -> Any:
    return {
        "id": task_id, "state": state, "exit_code": None, "signal": None,
        "worker_id": "worker-with-a-long-name-7", "created_at": "2026-11-28T03:00:00Z",
        "started_at": "2026-11-28T03:00:01Z", "finished_at": "2026-11-28T03:02:01Z",
        "name": None, "cmd": None, "argv": ["true"], **fields,
    }  # fmt: skip


ROWS = [
    listed("019ac4a3f2b75c0e7d1a9f3b", "succeeded", exit_code=0,
           cmd="python3 prepare.py --input /data/raw/2026-11-28 --output /data/clean --verbose"),
    listed("019ac4a3f2b75c0e7d1a9f3c", "cancelled", signal=15, name="nightly",
           cmd="for f in *.csv; do\n\tgzip $f\ndone"),
    listed("019ac4a3f2b75c0e7d1a9f3d", "timed_out", exit_code=124, cmd="sleep 600"),
]  # fmt: skip


@pytest.mark.parametrize("width", [80, 100])
def test_at_80_columns_ids_states_and_exits_are_whole_and_a_row_is_one_line(width: int) -> None:
    console = Console(width=width, record=True)
    console.print(task_table(ROWS, console.width))
    lines = console.export_text().rstrip("\n").split("\n")
    assert len(lines) == 1 + len(ROWS)  # a header, then one line per task
    assert all(len(line) <= width for line in lines)
    for line, row, exit_text in zip(lines[1:], ROWS, ["0", "sig 15", "124"], strict=True):
        assert line.startswith(row["id"][-8:] + " ")  # its short id, whole
        assert f" {row['state']} " in line
        assert f" {exit_text} " in line
    assert lines[1].rstrip().endswith("…")  # the long command is cut, on its one line


def test_in_a_pipe_rows_are_tab_separated_and_nothing_is_cut() -> None:
    text = tsv(*task_rows(ROWS))
    lines = text.split("\n")
    assert lines[0].split("\t") == ["ID", "STATE", "EXIT", "WORKER", "CREATED", "TOOK", "COMMAND"]
    assert len(lines) == 1 + len(ROWS)
    first = lines[1].split("\t")
    assert first[:3] == ["019ac4a3f2b75c0e7d1a9f3b", "succeeded", "0"]
    assert first[3] == "worker-with-a-long-name-7"
    assert first[-1] == ROWS[0]["cmd"]  # whole
    assert lines[2].split("\t")[-1] == "nightly: for f in *.csv; do\\n\\tgzip $f\\ndone"
