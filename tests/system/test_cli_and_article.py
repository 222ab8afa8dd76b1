"""Real processes: the article's curl, the CLI a user types, and its errors."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import eventually
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]


def test_the_articles_curl_creates_the_file(system_grid: SystemGrid, tmp_path: Path) -> None:
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    system_grid.start_master()
    system_grid.start_worker("w1", cwd=workdir)
    result = subprocess.run(
        [
            "curl", "-sS", "-X", "POST", "-H", "Content-Type: application/json",
            "-d", '{"cmd": "touch test.txt"}',
            f"http://localhost:{system_grid.http_port}/tasks",
            "-w", "\n%{http_code}",
        ],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "200"
    assert '"id"' in body
    eventually(lambda: (workdir / "test.txt").exists(), 20)


def test_run_prints_output_as_is_and_exits_with_the_tasks_code(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1")
    result = system_grid.cli("run", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3, result.stderr
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    ok = system_grid.cli("run", "--", "echo", "hello world")
    assert ok.returncode == 0
    assert ok.stdout == "hello world\n"
    killed = system_grid.cli("run", "--shell", "kill -9 $$")
    assert killed.returncode == 137
    assert "signal 9" in killed.stderr


def test_submit_ls_show_logs_cancel_workers(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    submitted = system_grid.cli("submit", "--name", "greet", "--", "echo", "hello")
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    assert re.fullmatch("[0-9a-f]{24}", task_id), task_id  # ms time, then 48 random bits
    queued = system_grid.cli_json("ls", "--state", "queued")
    assert [t["id"] for t in queued] == [task_id]
    table = system_grid.cli("ls")
    assert task_id in table.stdout
    assert "queued" in table.stdout

    system_grid.start_worker("w1", labels=("zone=b",))
    assert system_grid.task(task_id, wait=20)["state"] == "succeeded"
    shown = system_grid.cli_json("show", task_id)
    assert shown["exit_code"] == 0
    assert shown["worker_id"] == "w1"
    assert "succeeded" in system_grid.cli("show", task_id).stdout
    logs = system_grid.cli("logs", task_id)
    assert logs.stdout == "hello\n"
    assert system_grid.cli_json("logs", task_id)["stdout"]["text"] == "hello\n"
    assert [t["id"] for t in system_grid.cli_json("ls", "--worker", "w1", "--limit", "5")] == [
        task_id
    ]

    workers = system_grid.cli_json("workers")
    assert [(w["id"], w["state"], w["labels"]) for w in workers] == [
        ("w1", "online", {"zone": "b"})
    ]
    assert "w1" in system_grid.cli("workers").stdout

    long = system_grid.cli("submit", "--shell", "sleep 60").stdout.strip()
    eventually(lambda: system_grid.task(long)["state"] == "running", 20)
    cancelled = system_grid.cli("cancel", long)
    assert cancelled.returncode == 0
    assert system_grid.task(long, wait=20)["state"] == "cancelled"
    again = system_grid.cli("cancel", long)
    assert again.returncode == 1
    assert "cancelled" in again.stderr


def test_cli_errors_are_clear_and_non_zero(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    missing = system_grid.cli("show", "doesnotexist")
    assert missing.returncode == 1
    assert "no task with id 'doesnotexist'" in missing.stderr
    empty = system_grid.cli("submit")
    assert empty.returncode == 2
    assert "give a command" in empty.stderr
    bad_quote = system_grid.cli("submit", "echo 'unclosed")
    assert bad_quote.returncode == 1
    assert "cannot be parsed" in bad_quote.stderr
    bad_selector = system_grid.cli("submit", "--on", "zone in (a", "--", "true")
    assert bad_selector.returncode == 1
    assert "unclosed" in bad_selector.stderr
    unreachable = subprocess.run(
        [*system_grid.cli("--help").args[:3], "ls"],
        capture_output=True, text=True, timeout=30,
        env={**system_grid.env, "GRIDRUN_URL": "http://127.0.0.1:1"},
    )  # fmt: skip
    assert unreachable.returncode == 1
    assert "cannot reach the master" in unreachable.stderr


def test_every_option_can_come_from_the_environment(system_grid: SystemGrid) -> None:
    master_env = {
        "GRIDRUN_DB": str(system_grid.tmp / "env.db"),
        "GRIDRUN_HTTP": f"127.0.0.1:{system_grid.http_port}",
        "GRIDRUN_GRPC": f"127.0.0.1:{system_grid.grpc_port}",
        "GRIDRUN_OUTPUT_CAP": "4",
    }
    system_grid.master = system_grid._spawn("master", ["master"], env=master_env)
    eventually(system_grid.healthy, 20, 0.05)
    worker_env = {
        "GRIDRUN_MASTER": f"127.0.0.1:{system_grid.grpc_port}",
        "GRIDRUN_SLOTS": "3",
        "GRIDRUN_LABELS": "zone=b gpu=none",
        "GRIDRUN_DATA_DIR": str(system_grid.tmp / "envworker"),
        "GRIDRUN_NAME": "from-env",
    }
    system_grid._spawn("worker-env", ["worker"], env=worker_env)
    eventually(lambda: system_grid.worker_state("from-env") == "online", 20)
    (worker,) = system_grid.cli_json("workers")
    assert worker["slots"] == 3
    assert worker["labels"] == {"zone": "b", "gpu": "none"}
    result = system_grid.cli("run", "--", "echo", "abcdefgh")
    assert result.stdout == "fgh\n"  # the 4-byte output cap keeps the tail
    assert (system_grid.tmp / "env.db").exists()


def test_rich_tables_show_user_text_literally(system_grid: SystemGrid) -> None:
    system_grid.start_master()
    system_grid.cli("submit", "--name", "[b]n", "--", "echo", "[red]x[/red]")
    table = system_grid.cli("ls").stdout
    assert "[red]x[/red]" in table
    assert "[b]n" in table


def test_public_listen_is_refused_without_insecure(system_grid: SystemGrid) -> None:
    result = system_grid.cli("master", "--http", "0.0.0.0:0", "--db", "x.db", timeout=30)
    assert result.returncode == 1
    assert "refusing to listen beyond loopback" in result.stderr
    assert "HTTP on 0.0.0.0 has no API tokens" in result.stderr
