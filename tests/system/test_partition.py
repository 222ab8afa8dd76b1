"""A real network partition: a worker in its own network namespace, cut off from the master
longer than the liveness timeout while it runs a task, then healed."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import eventually, free_port, pid_alive
from tests.system.conftest import SystemGrid

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(180)]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Link:
    """A namespace joined to the host by a veth pair on a private /30 the test owns."""

    namespace: str
    host_if: str
    host_ip: str
    ns_ip: str

    def cut(self) -> None:
        _ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_if, "up")


@pytest.fixture
def link() -> Iterator[Link]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed")
    tag = f"{os.getpid() % 10000}{random.randrange(100)}"
    octet = random.randrange(1, 250)
    net = Link(f"grns{tag}", f"grh{tag}", f"10.213.{octet}.1", f"10.213.{octet}.2")
    _ip("netns", "add", net.namespace)
    try:
        _ip("link", "add", net.host_if, "type", "veth", "peer", "name", "grn" + tag)
        _ip("link", "set", "grn" + tag, "netns", net.namespace)
        _ip("addr", "add", f"{net.host_ip}/30", "dev", net.host_if)
        _ip("link", "set", net.host_if, "up")
        ns = ["netns", "exec", net.namespace, "ip"]
        _ip(*ns, "addr", "add", f"{net.ns_ip}/30", "dev", "grn" + tag)
        _ip(*ns, "link", "set", "grn" + tag, "up")
        _ip(*ns, "link", "set", "lo", "up")
        yield net
    finally:
        subprocess.run(["ip", "link", "del", net.host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", net.namespace], capture_output=True, timeout=10)


def test_partitioned_worker_loses_its_attempt_and_its_late_result_is_refused(
    system_grid: SystemGrid, link: Link, tmp_path: Path
) -> None:
    grid = system_grid
    grid.grpc_port = free_port()
    grid.start_master("--grpc", f"{link.host_ip}:{grid.grpc_port}", "--insecure")
    master = f"{link.host_ip}:{grid.grpc_port}"
    # the partitioned worker runs inside the namespace; the rescuer on the host
    grid._spawn(
        "worker-island",
        ["worker", "--master", master, "--slots", "1", "--name", "island",
         "--data-dir", str(tmp_path / "island"), "--allow-shell", "--run-as", "root"],
        prefix=["ip", "netns", "exec", link.namespace],
    )  # fmt: skip
    eventually(lambda: grid.worker_state("island") == "online", 30)
    pids = tmp_path / "pids"
    runs = tmp_path / "runs"
    task_id = grid.cli(
        "submit", "--max-attempts", "2", "--retry-delay", "0", "--shell",
        f'echo "$GRIDRUN_WORKER_ID $GRIDRUN_ATTEMPT" >> {runs}; echo $$ >> {pids}; sleep 25',
    ).stdout.strip()  # fmt: skip
    eventually(lambda: pids.exists() and pids.read_text().strip(), 20)
    stale_pid = int(pids.read_text().split()[0])
    try:
        link.cut()
        # silent for longer than the liveness timeout (4 s): attempt 1 is lost, and retried
        eventually(lambda: grid.task(task_id)["state"] in ("queued", "lost"), 20, 0.1)
        grid.start_worker("rescuer", slots=1, cwd=tmp_path, master=master)
        eventually(lambda: len(runs.read_text().split("\n")) > 2, 20)
        assert runs.read_text().splitlines() == ["island 1", "rescuer 2"]
        link.heal()
        # back online, the island is told its attempt is no longer its own: the process dies
        eventually(lambda: not pid_alive(stale_pid), 60, 0.2)
        eventually(lambda: grid.worker_state("island") == "online", 60, 0.2)
        grid.cli("cancel", task_id)  # end attempt 2 (it would sleep 25 s)
        done = grid.task(task_id, wait=30)
        assert [(a["attempt"], a["worker_id"], a["state"]) for a in done["attempts"]] == [
            (1, "island", "lost"),
            (2, "rescuer", "cancelled"),
        ]
        assert done["state"] == "cancelled"
        assert done["worker_id"] == "rescuer"  # exactly one accepted result: attempt 2's
        assert "stale" in grid.log("master") or "no longer" in grid.log("worker-island")
    finally:
        link.heal()
        for line in pids.read_text().split() if pids.exists() else []:
            if pid_alive(int(line)):
                os.killpg(int(line), signal.SIGKILL)
