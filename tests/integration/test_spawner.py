"""The worker's spawner (gridrun.worker.spawner) with real processes: a task is one exec from
it (no wrapper between them), a program that cannot start fails with the reason exec gives,
and a spawner that dies is replaced while what it started runs on and ends exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from gridrun.worker.identities import DEFAULT_RANGE
from tests.helpers import NO_CGROUPS, cgroups_usable, eventually_async, pid_alive
from tests.integration.conftest import Grid

ROOT = os.geteuid() == 0


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


async def test_a_task_is_one_exec_from_the_spawner_with_nothing_between(
    grid: Grid, tmp_path: Path
) -> None:
    """Its parent is the spawner, a small process of its own, not the worker, and on a root
    worker the task runs as its own uid (no setpriv exec did the switch)."""
    ids = {"task_ids": DEFAULT_RANGE} if ROOT else {}
    agent = await grid.add_worker("w1", **ids)
    task = await grid.submit(cmd="echo $PPID; id -u; id -G", shell=True)
    done = await grid.wait(task["id"])
    assert done["state"] == "succeeded", done
    parent, uid, groups = (await grid.output(task["id"]))["stdout"]["text"].split("\n")[:3]
    assert int(parent) != os.getpid()  # not the worker (this process)
    assert int(parent) == agent.spawner.pid
    assert any(part.endswith("gridrun/worker/spawner.py") for part in cmdline(int(parent)))
    if ROOT:
        assert int(uid) >= 2_000_000_000  # a uid of its own
        assert groups == uid  # and its own group alone


async def test_programs_that_cannot_start_fail_with_the_reason_exec_gives(
    grid: Grid, tmp_path: Path
) -> None:
    await grid.add_worker("w1")
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\necho never\n")
    plain.chmod(0o644)
    tmp_path.chmod(0o755)  # (reachable by a task's own uid)
    cases = {
        "/nonexistent/program": "cannot run '/nonexistent/program': No such file or directory",
        "no-such-program-anywhere": (
            "cannot run 'no-such-program-anywhere': No such file or directory"
        ),
        str(plain): f"cannot run {str(plain)!r}: Permission denied",
    }
    for program, error in cases.items():
        task = await grid.submit(argv=[program])
        done = await grid.wait(task["id"])
        assert done["state"] == "failed", done
        assert done["error"] == error, done
        assert done["exit_code"] is None, done
    missing_dir = await grid.submit(argv=["true"], cwd="/nonexistent/dir")
    done = await grid.wait(missing_dir["id"])
    assert done["state"] == "failed", done
    assert done["error"] == "cannot run '/nonexistent/dir': No such file or directory", done


async def test_the_allowlist_still_refuses_before_anything_starts(grid: Grid) -> None:
    await grid.add_worker("w1", allow=["true"], allow_shell=False)
    refused = await grid.submit(argv=["echo", "hi"])
    done = await grid.wait(refused["id"])
    assert done["state"] == "rejected", done
    assert "not in this worker's allowlist" in done["error"], done
    allowed = await grid.submit(argv=["true"])
    assert (await grid.wait(allowed["id"]))["state"] == "succeeded"


async def test_a_killed_spawner_is_replaced_and_what_it_started_ends_exactly_once(
    grid: Grid, tmp_path: Path
) -> None:
    """Two tasks run; the spawner is SIGKILLed. Both go on (they are the worker's children
    now) and end with their own exit codes and all their output; each ran once; the next
    task starts from a new spawner."""
    agent = await grid.add_worker("w1", slots=2)
    tmp_path.chmod(0o777)
    gate = tmp_path / "gate"
    script = (
        f"echo $GRIDRUN_TASK_ID >> {tmp_path}/runs; echo before;"
        f" while [ ! -e {gate} ]; do sleep 0.02; done; echo after; exit {{code}}"
    )
    first = await grid.submit(cmd=script.format(code=3), shell=True)
    second = await grid.submit(cmd=script.format(code=0), shell=True)
    runs = tmp_path / "runs"
    await eventually_async(lambda: runs.exists() and len(runs.read_text().split()) == 2, 20)
    old = agent.spawner.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    await eventually_async(lambda: agent.spawner.restarts == 1, 10)
    assert not pid_alive(old)
    gate.touch()
    done = [await grid.wait(t["id"]) for t in (first, second)]
    assert [(d["state"], d["exit_code"]) for d in done] == [("failed", 3), ("succeeded", 0)]
    for task in (first, second):
        assert (await grid.output(task["id"]))["stdout"]["text"] == "before\nafter\n"
        assert (await grid.task(task["id"]))["attempt"] == 1
    assert sorted(runs.read_text().split()) == sorted([first["id"], second["id"]])  # once each
    assert agent.spawner.pid not in (None, old)
    third = await grid.submit(cmd="echo fresh", shell=True)
    assert (await grid.wait(third["id"]))["state"] == "succeeded"
    assert (await grid.output(third["id"]))["stdout"]["text"] == "fresh\n"


@pytest.mark.skipif(not cgroups_usable(), reason=NO_CGROUPS)
async def test_pooled_groups_keep_limits_and_usage_exact_attempt_after_attempt(
    grid: Grid,
) -> None:
    """One slot, so attempts take turns in its group: one over its memory ask is stopped
    with the reason, the next with a larger ask fills more than the first's limit and
    succeeds with its own peak, one that forks a hundred children has them all counted and
    ended, and the usage of each is its own."""
    await grid.add_worker("w1", slots=1)
    fill = "python3 -c \"b = b'x' * ({mb} << 20); print(len(b))\""
    over = await grid.submit(cmd=fill.format(mb=200), shell=True, memory_mb=64)
    done = await grid.wait(over["id"], 60)
    assert done["state"] == "failed", done
    assert done["error"] == "out of memory: limit 64 MiB", done
    under = await grid.submit(cmd=fill.format(mb=100), shell=True, memory_mb=256)
    done = await grid.wait(under["id"], 60)
    assert done["state"] == "succeeded", done
    assert 100 << 20 <= done["peak_memory_bytes"] < 200 << 20, done
    forks = "for i in $(seq 100); do sleep 0.3 & done; wait; echo forked"
    many = await grid.submit(cmd=forks, shell=True)
    done = await grid.wait(many["id"], 60)
    assert done["state"] == "succeeded", done
    assert (await grid.output(many["id"]))["stdout"]["text"] == "forked\n"
    assert done["peak_memory_bytes"] < 100 << 20, done  # not the last attempt's 100 MB
    small = await grid.submit(cmd="true", shell=True)
    done = await grid.wait(small["id"])
    assert done["state"] == "succeeded", done
    assert done["cpu_s"] < 0.5, done  # not the attempts' before it
