"""A task cannot reach the worker that runs it: its environment (the join token), its data dir
(the identity secret, the outbox) and its token file. A real worker process started as root
with its defaults, in a directory every user may traverse, so only the worker's own defences
stand in the way."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gridrun.auth import digest, new_token
from tests.helpers import eventually
from tests.system.conftest import SystemGrid

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="the default user switch needs a root worker"),
]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory any user may enter (tmp_path is not: its parent is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="gridrun-open-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_task_cannot_read_the_workers_environment_data_dir_or_token(
    system_grid: SystemGrid, open_dir: Path
) -> None:
    token = new_token()
    system_grid.start_master("--tokens", f"fleet:worker:{digest(token)}")
    token_file = open_dir / "join.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    data_dir = open_dir / "worker-data"
    system_grid.env["GRIDRUN_JOIN_TOKEN"] = token  # also in its environment
    proc = system_grid._spawn(
        "worker-w1",
        [
            "worker", "--master", f"127.0.0.1:{system_grid.grpc_port}", "--name", "w1",
            "--data-dir", str(data_dir), "--join-token-file", str(token_file), "--allow-shell",
            "--env-allow", "*",  # even a worker that passes its whole environment on
        ],
        cwd=open_dir,
    )  # fmt: skip
    eventually(lambda: system_grid.worker_state("w1") == "online", 20, 0.1)
    secret_file = data_dir / "identity-secret"
    assert secret_file.exists()
    probe = (
        f"id -u; cat /proc/{proc.pid}/environ; cat /proc/{proc.pid}/cmdline;"
        f" ls -la {data_dir}; cat {secret_file}; cat {token_file};"
        f' echo "env: $GRIDRUN_JOIN_TOKEN"; exit 0'
    )
    response = httpx.post(
        f"{system_grid.url}/v1/tasks", json={"cmd": probe, "shell": True}, timeout=10
    )
    assert response.status_code == 201, response.text
    task = httpx.get(
        f"{system_grid.url}/v1/tasks/{response.json()['id']}", params={"wait": 30}, timeout=40
    ).json()
    assert task["state"] == "succeeded", task
    out = httpx.get(f"{system_grid.url}/v1/tasks/{task['id']}/output", timeout=10).json()
    said = out["stdout"]["text"] + out["stderr"]["text"]
    assert said.splitlines()[0] != "0"  # not root
    assert token not in said
    assert secret_file.read_text().strip() not in said
    assert "Permission denied" in said
    assert "env: \n" in said or said.rstrip().endswith("env:")
    log = (system_grid.tmp / "worker-w1.log").read_text()
    assert "tasks run as" in log
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert secret_file.stat().st_mode & 0o777 == 0o600
