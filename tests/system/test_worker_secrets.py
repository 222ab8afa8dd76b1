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
    # (the worker keeps the secret its Welcome brings: a moment after the master lists it)
    eventually(secret_file.exists, 10, 0.05)
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
    assert "each task runs as a uid of its own" in log
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert secret_file.stat().st_mode & 0o777 == 0o600


def test_two_owners_tasks_on_one_worker_cannot_read_signal_or_trace_each_other(
    system_grid: SystemGrid, open_dir: Path
) -> None:
    """A root worker with its defaults: the first task holds a secret and sleeps; the second,
    on the same worker at the same time, tries to read its environ, ptrace it and kill it, and
    fails each time; the first ends as it would alone. (Both ran as `nobody` before: the
    second printed DB_PASSWORD=s3cret and killed the first.)"""
    system_grid.start_master()
    system_grid._spawn(
        "worker-w1",
        [
            "worker", "--master", f"127.0.0.1:{system_grid.grpc_port}", "--name", "w1",
            "--data-dir", str(open_dir / "worker-data"), "--allow-shell", "--slots", "2",
        ],
        cwd=open_dir,
    )  # fmt: skip
    eventually(lambda: system_grid.worker_state("w1") == "online", 20, 0.1)
    url = system_grid.url
    header, row = system_grid.cli("workers").stdout.strip().split("\n")  # (a pipe: TSV)
    said_as = dict(zip(header.split("\t"), row.split("\t"), strict=True))["TASKS AS"]
    assert said_as == "a uid each"
    victim = httpx.post(
        f"{url}/v1/tasks",
        json={"cmd": "id -u; echo $TMPDIR; echo x > /tmp/left-by-victim; sleep 4.25; echo done",
              "shell": True,
              "secret_env": {"DB_PASSWORD": "s3cret"}},
        timeout=10,
    ).json()  # fmt: skip
    eventually(lambda: system_grid.task(victim["id"])["state"] == "running", 20, 0.1)
    pids = (
        # the victim's process (by its command line: not whatever else on this host sleeps)
        "for p in $(pgrep -xf 'sleep 4.25'); do echo pid $p;"
        " tr '\\0' '\\n' < /proc/$p/environ && echo read-environ;"
        ' python3 -c "import ctypes,sys; sys.exit(ctypes.CDLL(None).ptrace(16, $p, 0, 0))"'
        " && echo traced;"
        " kill -9 $p && echo killed; done; cat /tmp/left-by-victim && echo saw-tmp;"
        " id -u; echo $TMPDIR; exit 0"
    )
    attacker = httpx.post(f"{url}/v1/tasks", json={"cmd": pids, "shell": True}, timeout=10).json()
    done = system_grid.task(attacker["id"], wait=30)
    assert done["state"] == "succeeded", done
    said = httpx.get(f"{url}/v1/tasks/{attacker['id']}/output", timeout=10).json()
    text = said["stdout"]["text"] + said["stderr"]["text"]
    assert "pid " in text  # it saw the other task's process (a shared /proc)
    for what in ("s3cret", "read-environ", "traced", "killed", "saw-tmp"):
        assert what not in text, text
    ended = system_grid.task(victim["id"], wait=30)
    assert (ended["state"], ended["exit_code"]) == ("succeeded", 0), ended
    out = httpx.get(f"{url}/v1/tasks/{victim['id']}/output", timeout=10).json()["stdout"]["text"]
    victim_uid, victim_tmp, _ = out.split("\n", 2)
    attacker_uid, attacker_tmp = said["stdout"]["text"].strip().split("\n")[-2:]
    assert victim_uid != attacker_uid
    assert int(victim_uid) >= 2_000_000_000
    assert int(attacker_uid) >= 2_000_000_000
    assert victim_tmp != attacker_tmp  # a private TMPDIR each
    home = Path(victim_tmp)  # emptied when the attempt ended (kept for the uid's next one)
    assert not home.exists() or list(home.iterdir()) == []
    assert not Path("/tmp/left-by-victim").exists()  # its /tmp was its own, not the host's
