"""The worker's policy, enforced on real processes: refused tasks end `rejected` and never run."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

import pytest

from gridrun.errors import ConfigError
from gridrun.worker.agent import Agent
from gridrun.worker.config import WorkerConfig
from gridrun.worker.policy import Policy
from tests.integration.conftest import Grid

pytestmark = pytest.mark.timeout(60)


async def test_shell_tasks_are_refused_by_default(grid: Grid, tmp_path: Path) -> None:
    await grid.add_worker("strict", allow_shell=False)
    marker = tmp_path / "ran"
    task = await grid.submit(cmd=f"touch {marker}", shell=True)
    done = await grid.wait(task["id"])
    assert done["state"] == "rejected"
    assert "does not run shell tasks" in done["error"]
    assert done["exit_code"] is None
    assert not marker.exists()
    plain = await grid.submit(argv=["touch", str(marker)])  # argv tasks still run
    assert (await grid.wait(plain["id"]))["state"] == "succeeded"
    assert marker.exists()


async def test_the_allowlist_matches_resolved_paths_and_names(grid: Grid) -> None:
    await grid.add_worker("locked", allow_shell=False, allow=["/usr/bin/t*", "echo"])
    ok = [await grid.submit(cmd="true"), await grid.submit(cmd="echo hi")]
    for task in ok:
        assert (await grid.wait(task["id"]))["state"] == "succeeded"
    refused = await grid.submit(cmd="cat /etc/hostname")
    done = await grid.wait(refused["id"])
    assert done["state"] == "rejected"
    assert "'cat' (/usr/bin/cat) is not in this worker's allowlist" in done["error"]
    missing = await grid.submit(cmd="echo-nope")
    assert (await grid.wait(missing["id"]))["state"] == "rejected"
    # a rejection is final: never retried, whatever the task asked
    again = await grid.submit(cmd="cat /etc/hostname", max_attempts=3, retry={"initial_s": 0})
    done = await grid.wait(again["id"])
    assert done["state"] == "rejected"
    assert len(done["attempts"]) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="--run-as needs root")
async def test_run_as_runs_tasks_as_that_user(grid: Grid) -> None:
    await grid.add_worker("dropper", run_as="nobody", cwd_mode="fresh")
    task = await grid.submit(cmd='echo "$(id -u) $(id -g) $HOME"', shell=True)
    done = await grid.wait(task["id"])
    assert done["state"] == "succeeded", done
    uid, gid, home = (await grid.output(task["id"]))["stdout"]["text"].split()
    assert (uid, gid) == ("65534", "65534")
    assert home == "/nonexistent"


def test_run_as_is_a_switch_of_ids_in_the_child_and_none_for_the_workers_own() -> None:
    me = pwd.getpwuid(os.geteuid()).pw_name
    nogroup = grp.getgrnam("nogroup").gr_gid

    def ids(run_as: str) -> tuple[int, int] | None:
        launch = Policy(run_as=run_as).admit("t", 1, ("true",), False, None, {}, {})
        assert launch.env["USER"] == pwd.getpwnam(run_as.partition(":")[0]).pw_name
        assert launch.argv == ("true",)  # no wrapper: the spawner's child switches
        return launch.ids

    assert ids("nobody") == (65534, 65534)
    assert ids(f"{me}:nogroup") == (os.geteuid(), nogroup)  # another group: switched
    if set(os.getgroups()) <= {os.getegid()}:  # no other groups to drop (CI, a service)
        assert ids(me) is None
    else:
        assert ids(me) == (os.geteuid(), os.getegid())  # dropping the groups changes something


@pytest.mark.skipif(os.geteuid() != 0, reason="--run-as needs a root worker")
async def test_run_as_root_on_a_root_worker_runs_as_root_with_no_other_groups(grid: Grid) -> None:
    await grid.add_worker("root", run_as="root")
    task = await grid.submit(cmd='echo "$(id -u) $(id -G) $USER"', shell=True)
    done = await grid.wait(task["id"])
    assert done["state"] == "succeeded", done
    out = (await grid.output(task["id"]))["stdout"]["text"].split()
    assert (out[0], out[-1]) == ("0", "root")
    assert set(out[1:-1]) <= {"0"} | {str(g) for g in os.getgroups()}


async def test_cpu_limit_stops_a_busy_process(grid: Grid) -> None:
    await grid.add_worker("limited", limit_cpu_s=1)
    task = await grid.submit(argv=["python3", "-c", "while True: pass"], timeout_s=30)
    done = await grid.wait(task["id"], 30)
    assert done["state"] == "failed"
    assert done["signal"] in (24, 9)  # SIGXCPU at the soft limit (SIGKILL at the hard one)


async def test_memory_and_open_file_limits(grid: Grid) -> None:
    await grid.add_worker("limited", limit_address_space_mb=300, limit_open_files=32)
    hog = await grid.submit(argv=["python3", "-c", "b = bytearray(800 * 1024 * 1024)"])
    done = await grid.wait(hog["id"])
    assert done["state"] == "failed"
    assert "MemoryError" in (await grid.output(hog["id"]))["stderr"]["text"]
    files = await grid.submit(
        argv=["python3", "-c", "fs = [open('/dev/null') for _ in range(100)]"]
    )
    done = await grid.wait(files["id"])
    assert done["state"] == "failed"
    assert "Too many open files" in (await grid.output(files["id"]))["stderr"]["text"]
    small = await grid.submit(argv=["python3", "-c", "b = bytearray(10 * 1024 * 1024)"])
    assert (await grid.wait(small["id"]))["state"] == "succeeded"


async def test_the_environment_is_scrubbed_to_the_allowlist(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDRUN_TEST_SECRET", "hunter2")
    monkeypatch.setenv("MY_APP_MODE", "prod")
    await grid.add_worker("clean", env_allow=["PATH", "MY_APP_*"])
    task = await grid.submit(argv=["env"], env={"TASK_OWN": "yes"})
    await grid.wait(task["id"])
    seen = dict(
        line.split("=", 1)
        for line in (await grid.output(task["id"]))["stdout"]["text"].split("\n")
        if "=" in line
    )
    assert "GRIDRUN_TEST_SECRET" not in seen
    assert "HOME" not in seen  # not on this worker's list
    assert seen["MY_APP_MODE"] == "prod"
    assert seen["TASK_OWN"] == "yes"
    assert seen["GRIDRUN_TASK_ID"] == task["id"]
    assert "PATH" in seen


async def test_cwd_roots_and_fresh_directories(grid: Grid, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "inner").mkdir(parents=True)
    await grid.add_worker("boxed", cwd_roots=[str(allowed)], cwd_mode="fresh")
    inside = await grid.submit(cmd="pwd", cwd=str(allowed / "inner"))
    assert (await grid.wait(inside["id"]))["state"] == "succeeded"
    outside = await grid.submit(cmd="pwd", cwd="/etc")
    done = await grid.wait(outside["id"])
    assert done["state"] == "rejected"
    assert "outside this worker's allowed roots" in done["error"]
    sneaky = await grid.submit(cmd="pwd", cwd=str(allowed / ".." / "elsewhere"))
    assert (await grid.wait(sneaky["id"]))["state"] == "rejected"
    fresh = await grid.submit(cmd="pwd")
    await grid.wait(fresh["id"])
    where = Path((await grid.output(fresh["id"]))["stdout"]["text"].strip())
    assert where == tmp_path / "workers" / "boxed" / "work" / "tasks" / f"{fresh['id']}-1"
    assert not where.exists()  # removed when the attempt ended


def test_impossible_policies_are_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no user"):
        Agent(WorkerConfig(data_dir=tmp_path / "w", run_as="no-such-user-gridrun"))
    # the data dir is not left locked by the failed start
    Agent(WorkerConfig(data_dir=tmp_path / "w")).identity.release()


async def test_asks_a_worker_cannot_limit_are_refused_unless_it_places_by_asks_only(
    grid: Grid,
) -> None:
    # a worker without cgroups (subreaper) could not hold a task to its memory_mb or cpu:
    # it says so in its Hello and refuses such a task with the reason, instead of a wish
    await grid.add_worker("w1", containment="subreaper")
    (worker,) = (await grid.api.get("/v1/workers")).json()["workers"]
    assert "cannot limit cpu or memory" in worker["containment"]
    asked = await grid.submit(cmd="echo hi", memory_mb=64)
    done = await grid.wait(asked["id"])
    assert done["state"] == "rejected"
    assert "cannot limit memory" in done["error"]
    assert "--no-enforce-asks" in done["error"]
    plain = await grid.submit(cmd="echo plain")  # asking nothing, it runs as ever
    assert (await grid.wait(plain["id"]))["state"] == "succeeded"
    # started to place by asks only, it runs them (and says nothing of limits)
    await grid.add_worker("w2", containment="subreaper", enforce_asks=False)
    await grid.stop_worker(grid.agents[0].agent)
    again = await grid.submit(cmd="echo hi", memory_mb=64, cpu=0.5)
    assert (await grid.wait(again["id"]))["state"] == "succeeded"
