"""A task's files through the CLI, with real processes: `submit --input/--input-dir/--collect`,
`gridrun files`, `gridrun cp` (a file, stdout, all of a task's, a job's per index), the
errors a user gets, a collected file an escaped child was still writing (its box is emptied
first), and a master SIGKILLed mid-upload (the file is incomplete, never silently partial,
and whole once the worker sends it again)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import eventually, pid_alive
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(240)]


def test_inputs_go_with_a_task_and_collected_files_come_back_through_the_cli(
    system_grid: SystemGrid, tmp_path: Path
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1")
    data = os.urandom(300_000)
    (tmp_path / "data.bin").write_bytes(data)
    tree = tmp_path / "conf"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("A\n")
    (tree / "sub" / "b.sh").write_text("#!/bin/sh\necho B\n")
    os.chmod(tree / "sub" / "b.sh", 0o755)
    script = (
        "mkdir -p out && cat in/data.bin > out/copy.bin && cat conf/a.txt > out/a.txt"
        " && conf/sub/b.sh > out/b.txt && ls -l conf/sub/b.sh | cut -c1-10 > out/mode"
    )
    submitted = system_grid.cli(
        "submit", "--shell", "--input", "data.bin:in/data.bin", "--input-dir", "conf",
        "--collect", "out/*", "--wait", "--", script,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    listed = system_grid.cli_json("files", task_id)
    assert sorted(f["path"] for f in listed) == [
        "out/a.txt", "out/b.txt", "out/copy.bin", "out/mode"
    ]  # fmt: skip
    assert {f["state"] for f in listed} == {"complete"}
    table = system_grid.cli("files", task_id)
    assert "out/copy.bin" in table.stdout
    assert hashlib.sha256(data).hexdigest()[:12] in table.stdout
    to_stdout = subprocess_bytes(system_grid, "cp", f"{task_id}:out/copy.bin", "-")
    assert to_stdout == data
    assert system_grid.cli("cp", f"{task_id}:out/copy.bin", str(tmp_path)).returncode == 0
    assert (tmp_path / "copy.bin").read_bytes() == data
    assert system_grid.cli("cp", f"{task_id}:", str(tmp_path / "all")).returncode == 0
    assert (tmp_path / "all" / "out" / "a.txt").read_text() == "A\n"
    assert (tmp_path / "all" / "out" / "b.txt").read_text() == "B\n"
    assert (tmp_path / "all" / "out" / "mode").read_text() == "-rwxr-xr-x\n"  # the mode kept
    # what a user gets wrong: clear messages, exit 2 (nothing submitted) or 1
    missing = system_grid.cli("submit", "--input", "nope.bin", "--", "true")
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
    upward = system_grid.cli("submit", "--input", "data.bin:../x", "--", "true")
    assert upward.returncode == 2
    assert "'..'" in upward.stderr
    absent = system_grid.cli("cp", f"{task_id}:out/none", str(tmp_path / "none"))
    assert absent.returncode == 1
    assert "no collected file 'out/none'" in absent.stderr
    assert not (tmp_path / "none").exists()
    assert len(system_grid.cli_json("ls")) == 1  # the refused ones queued nothing
    # a backup holds the files: restored, a master gives them back byte-exact
    copy = tmp_path / "grid.backup"
    assert system_grid.cli("backup", str(copy), "--db", system_grid.db).returncode == 0
    for worker in system_grid.workers.values():
        worker.send_signal(signal.SIGKILL)
    system_grid.kill_master(signal.SIGTERM)
    restored = tmp_path / "restored" / "gridrun.db"
    assert system_grid.cli("restore", str(copy), "--db", str(restored)).returncode == 0
    system_grid.db = str(restored)
    system_grid.start_master()
    assert subprocess_bytes(system_grid, "cp", f"{task_id}:out/copy.bin", "-") == data


def test_a_jobs_files_are_copied_per_index(system_grid: SystemGrid, tmp_path: Path) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1", slots=3)
    made = system_grid.cli(
        "submit", "--array", "1-3", "--shell", "--collect", "r.txt", "--wait", "--",
        "echo result $GRIDRUN_ARRAY_INDEX > r.txt",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    job_id = made.stdout.split()[0]
    copied = system_grid.cli("cp", f"{job_id}:r.txt", str(tmp_path / "results"))
    assert copied.returncode == 0, copied.stderr
    for index in (1, 2, 3):
        assert (tmp_path / "results" / str(index) / "r.txt").read_text() == f"result {index}\n"


def test_a_file_an_escaped_child_was_writing_is_collected_after_the_child_is_gone(
    system_grid: SystemGrid, tmp_path: Path
) -> None:
    """The child leaves the task's session and keeps appending; the attempt ends when its
    main process does, its box is emptied (the child killed), and only then is the file
    read: what comes back is one consistent file, and the writer is gone."""
    system_grid.start_master()
    system_grid.start_worker("w1")
    script = (
        "setsid sh -c 'echo $$ > pid; while :; do echo line >> log.txt; done' &"
        " while [ ! -s log.txt ]; do sleep 0.01; done; sleep 0.3"
    )
    made = system_grid.cli("submit", "--shell", "--collect", "*", "--wait", "--", script)
    assert made.returncode == 0, made.stderr
    task_id = made.stdout.strip()
    listed = {f["path"]: f for f in system_grid.cli_json("files", task_id)}
    log = listed["log.txt"]
    assert log["state"] == "complete"
    body = subprocess_bytes(system_grid, "cp", f"{task_id}:log.txt", "-")
    assert len(body) == log["size"] > 0
    assert hashlib.sha256(body).hexdigest() == log["sha256"]
    assert set(body.split(b"\n")) <= {b"line", b""}  # (a torn write would show here)
    pid = int(subprocess_bytes(system_grid, "cp", f"{task_id}:pid", "-"))
    assert not pid_alive(pid)


def test_a_master_sigkilled_mid_upload_leaves_the_file_incomplete_then_whole(
    system_grid: SystemGrid, tmp_path: Path
) -> None:
    system_grid.start_master()
    system_grid.start_worker("w1")
    made = system_grid.cli(
        "submit", "--shell", "--collect", "big.bin", "--",
        "head -c 200000000 /dev/urandom > big.bin && sha256sum big.bin",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    task_id = made.stdout.strip()
    db = Path(system_grid.db)

    def uploading() -> bool:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                chunks = conn.execute("SELECT count(*) FROM chunks WHERE blob LIKE 'f/%'")
                return int(chunks.fetchone()[0]) >= 8
        except sqlite3.OperationalError:
            return False

    eventually(uploading, 60, 0.02)
    system_grid.kill_master()
    with sqlite3.connect(db) as conn:
        (state,) = conn.execute("SELECT state FROM task_files WHERE task_id = ?", (task_id,))
    assert state == ("incomplete",)  # never complete with some of the bytes
    system_grid.start_master()
    eventually(lambda: system_grid.task(task_id, wait=30)["state"] == "succeeded", 120)
    written = json.loads(system_grid.cli("logs", task_id, "--json").stdout or "{}")
    expected = (written.get("stdout") or {}).get("text", "").split()[0]
    listed = system_grid.cli_json("files", task_id)
    assert [(f["path"], f["state"], f["size"]) for f in listed] == [
        ("big.bin", "complete", 200_000_000)
    ]
    assert listed[0]["sha256"] == expected
    sha = hashlib.sha256(subprocess_bytes(system_grid, "cp", f"{task_id}:big.bin", "-"))
    assert sha.hexdigest() == expected


def subprocess_bytes(system_grid: SystemGrid, *args: str) -> bytes:
    """What a CLI command writes to stdout, as bytes (it must succeed)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "gridrun", *args],
        capture_output=True,
        timeout=120,
        env={**system_grid.env, "GRIDRUN_URL": system_grid.url},
        cwd=system_grid.tmp,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout
