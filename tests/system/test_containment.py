"""Containment: whatever an attempt starts ends with it. Each escape a user found (a `setsid`
child outliving a finished task, a cancel or a timeout waiting on an escaped child's stdout,
a worker's SIGKILL leaving its tasks running while their retry runs elsewhere) is tried
against real processes and real cgroups; so are asks as limits (memory, the process cap) and
the usage measured. Every test checks that no cgroup of its workers is left behind."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gridrun.worker.containment import subtree_name
from gridrun.worker.hierarchies import discover
from gridrun.worker.proctree import descendants
from tests.helpers import NO_CGROUPS, cgroups_usable, eventually, pid_alive, read_pid
from tests.system.conftest import SystemGrid, is_guardian, is_spawner

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.timeout(180)]


def submit(grid: SystemGrid, cmd: str, **body: object) -> str:
    response = httpx.post(f"{grid.url}/v1/tasks", json={"cmd": cmd, "shell": True, **body})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def leftover_groups(grid: SystemGrid) -> list[Path]:
    """The subtrees of this grid's workers (w1, w2) in every hierarchy we can see."""
    names = [subtree_name(w, grid.tmp / "workers" / w) for w in ("w1", "w2")]
    return [h.own / n for h in discover() for n in names if (h.own / n).exists()]


@pytest.fixture
def contained(system_grid: SystemGrid) -> Iterator[SystemGrid]:
    """A grid whose workers must leave no cgroup behind (checked after they stop)."""
    yield system_grid
    system_grid.close()
    eventually(lambda: not leftover_groups(system_grid), 10)


@pytest.fixture(params=["cgroup", "subreaper"])
def mode(request: pytest.FixtureRequest) -> str:
    if request.param == "cgroup" and not cgroups_usable():
        pytest.skip(NO_CGROUPS)  # CI runs as root with cgroups: both modes run there
    return str(request.param)


def mode_args(mode: str) -> tuple[str, ...]:
    """The worker's flags for `mode`: a root worker's default (auto) is cgroup."""
    return () if mode == "cgroup" else ("--containment", mode)


def escaping(
    grid: SystemGrid, mode: str, tmp_path: Path, script: str, **body: object
) -> tuple[str, Path]:
    """A grid whose worker is in `mode`, running `script`, which writes the pid of the child it
    lets escape to `{pidfile}`: the task's id and that file."""
    grid.start_master()
    grid.start_worker("w1", extra=mode_args(mode))
    pidfile = tmp_path / "child.pid"
    return submit(grid, script.format(pidfile=pidfile), **body), pidfile


def test_a_setsid_child_does_not_outlive_its_finished_task(
    contained: SystemGrid, tmp_path: Path, mode: str
) -> None:
    script = "setsid sleep 300 >/dev/null 2>&1 </dev/null & echo $! > {pidfile}; sleep 1"
    task_id, pidfile = escaping(contained, mode, tmp_path, script)
    assert contained.task(task_id, wait=30)["state"] == "succeeded"
    child = read_pid(pidfile)
    eventually(lambda: not pid_alive(child), 5)


def test_a_cancel_ends_the_task_and_its_escaped_child_at_once(
    contained: SystemGrid, tmp_path: Path, mode: str
) -> None:
    script = "setsid sleep 305 & echo $! > {pidfile}; sleep 200"
    task_id, pidfile = escaping(contained, mode, tmp_path, script)
    eventually(pidfile.exists, 20)
    child = read_pid(pidfile)
    eventually(lambda: contained.task(task_id)["state"] == "running", 20)
    began = time.monotonic()
    contained.cli("cancel", task_id)
    done = contained.task(task_id, wait=30)
    took = time.monotonic() - began
    assert done["state"] == "cancelled"
    assert took < 1 + 1 + 3, took  # kill grace 1 s + 1 s, and slack for a loaded machine
    eventually(lambda: not pid_alive(child), 5)


def test_a_timeout_is_kept_whatever_an_escaped_child_does_with_stdout(
    contained: SystemGrid, tmp_path: Path, mode: str
) -> None:
    script = "setsid sleep 310 & echo $! > {pidfile}; sleep 200"
    began = time.monotonic()
    task_id, pidfile = escaping(contained, mode, tmp_path, script, timeout_s=3)
    done = contained.task(task_id, wait=60)
    took = time.monotonic() - began
    assert done["state"] == "timed_out"
    assert took < 3 + 1 + 1 + 4, took  # timeout + kill grace + 1 s, and slack
    eventually(lambda: not pid_alive(read_pid(pidfile)), 5)


@pytest.mark.skipif(not cgroups_usable(), reason=NO_CGROUPS)
def test_a_killed_worker_takes_its_tasks_with_it_so_a_retry_never_runs_beside_them(
    contained: SystemGrid, tmp_path: Path
) -> None:
    """A task that retries (max_attempts=3) beats into a file every 100 ms, from a process that
    escaped its shell with setsid. Its worker is SIGKILLed; the retry starts on another worker
    once the master declares the first lost. The first copy's last beat comes before the
    second copy's first: never two copies alive at once."""
    contained.start_master()
    first = contained.start_worker("w1")
    beats = tmp_path / "beats"
    beats.mkdir()
    loop = f"while :; do date +%s%N >> {beats}/$GRIDRUN_ATTEMPT; sleep 0.1; done"
    task_id = submit(contained, f"setsid sh -c '{loop}' & wait", max_attempts=3)
    eventually(lambda: (beats / "1").exists(), 20)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    contained.start_worker("w2")
    eventually(lambda: (beats / "2").exists(), 40)
    time.sleep(0.5)  # a few beats of the second copy
    last_of_first = int((beats / "1").read_text().split()[-1])
    first_of_second = int((beats / "2").read_text().split()[0])
    assert last_of_first < first_of_second
    assert contained.task(task_id)["attempt"] == 2
    contained.cli("cancel", task_id)
    contained.task(task_id, wait=30)


def test_a_killed_worker_takes_its_spawner_and_its_tasks_with_it(
    contained: SystemGrid, mode: str, tmp_path: Path
) -> None:
    """The spawner (the parent of every task) dies with its worker, and so does the task
    it started (the spawner kills it, and in cgroup mode the guardian its whole group)."""
    contained.start_master()
    worker = contained.start_worker("w1", extra=mode_args(mode))
    pidfile = tmp_path / "task.pid"
    tmp_path.chmod(0o777)
    submit(contained, f"echo $$ > {pidfile}; exec sleep 300")
    eventually(pidfile.exists, 20)
    task = read_pid(pidfile)
    (spawner,) = [pid for pid in descendants(worker.pid) if is_spawner(pid)]
    assert task in descendants(spawner)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    eventually(lambda: not pid_alive(spawner), 10)
    eventually(lambda: not pid_alive(task), 10)


@pytest.mark.skipif(not cgroups_usable(), reason=NO_CGROUPS)
def test_a_restarted_worker_kills_what_its_previous_process_left(
    contained: SystemGrid, tmp_path: Path
) -> None:
    """Even with its guardian gone too (both SIGKILLed), the next start of the worker on the
    same data dir kills the attempts the dead one left."""
    contained.start_master()
    worker = contained.start_worker("w1")
    pidfile = tmp_path / "child.pid"
    submit(contained, f"setsid sleep 320 & echo $! > {pidfile}; sleep 300")
    eventually(pidfile.exists, 20)
    child = read_pid(pidfile)
    (guardian,) = [pid for pid in descendants(worker.pid) if is_guardian(pid)]
    os.kill(guardian, signal.SIGKILL)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    time.sleep(0.5)
    assert pid_alive(child)  # nobody killed it: the worker is gone, and its guardian
    contained.start_worker("w1")
    eventually(lambda: not pid_alive(child), 10)


@pytest.mark.skipif(not cgroups_usable(), reason=NO_CGROUPS)
def test_a_task_over_its_memory_ask_is_stopped_with_the_reason_and_the_worker_lives(
    contained: SystemGrid,
) -> None:
    contained.start_master()
    contained.start_worker("w1")
    hog = "python3 -c \"b = b'x' * (512 * 1024 * 1024); print(len(b))\""
    task_id = submit(contained, hog, memory_mb=64)
    done = contained.task(task_id, wait=60)
    assert done["state"] == "failed", done
    assert done["error"] == "out of memory: limit 64 MiB", done
    assert contained.worker_state("w1") == "online"
    ok = submit(contained, "echo still here")
    assert contained.task(ok, wait=30)["state"] == "succeeded"


@pytest.mark.skipif(not cgroups_usable(), reason=NO_CGROUPS)
def test_a_fork_bomb_stops_at_its_own_process_cap(contained: SystemGrid) -> None:
    contained.start_master()
    contained.start_worker("w1", extra=("--task-pids", "40"))
    bomb = "i=0; while [ $i -lt 300 ]; do sleep 60 & i=$((i+1)); echo $i; done; wait"
    task_id = submit(contained, bomb, timeout_s=60)
    done = contained.task(task_id, wait=60)
    assert done["state"] == "failed", done
    out = httpx.get(f"{contained.url}/v1/tasks/{task_id}/output").json()
    started = [int(n) for n in out["stdout"]["text"].split()]
    assert max(started) < 40, started[-3:]  # the shell itself is one of the 40
    assert "fork" in out["stderr"]["text"].lower(), out["stderr"]["text"]


def test_an_attempt_records_the_cpu_and_memory_it_used(contained: SystemGrid, mode: str) -> None:
    """From its cgroup; in subreaper mode the CPU from wait4 (the main process and what it
    waited for) and no memory figure (ru_maxrss of a vfork child counts the worker's RSS)."""
    contained.start_master()
    contained.start_worker("w1", extra=mode_args(mode))
    burn = (
        'python3 -c "import os, time\n'
        "b = b'y' * (64 * 1024 * 1024)\n"
        "end = time.process_time() + 1.0\n"
        "while time.process_time() < end: pass\n"
        't = os.times(); print(t.user + t.system)"'
    )
    task_id = submit(contained, burn)
    done = contained.task(task_id, wait=60)
    assert done["state"] == "succeeded", done
    (attempt,) = done["attempts"]
    own = float(httpx.get(f"{contained.url}/v1/tasks/{task_id}/output").json()["stdout"]["text"])
    assert attempt["cpu_s"] == pytest.approx(own, rel=0.2), (attempt, own)
    if mode == "subreaper":
        assert attempt["peak_memory_bytes"] is None, attempt
        return
    assert 64 * 1024 * 1024 <= attempt["peak_memory_bytes"] < 512 * 1024 * 1024, attempt
    assert (done["cpu_s"], done["peak_memory_bytes"]) == (
        attempt["cpu_s"], attempt["peak_memory_bytes"]
    )  # fmt: skip  # the task shows its final attempt's
    small = submit(contained, "true")
    contained.task(small, wait=30)
    listed = contained.cli_json("ls", "--sort", "memory")
    assert [t["id"] for t in listed][:2] == [task_id, small], [
        (t["id"], t.get("peak_memory_bytes")) for t in listed
    ]
    shown = contained.cli("ls", "--sort", "cpu")
    assert "CPU" in shown.stdout, shown.stdout  # the usage columns are shown


@pytest.mark.skipif(not cgroups_usable(), reason=NO_CGROUPS)
def test_a_worker_that_fails_before_it_starts_leaves_no_cgroup(system_grid: SystemGrid) -> None:
    """Its containment is chosen (a probe makes and removes the subtree) before a bad option
    stops it: nothing is left, since only a started worker, with its guardian, keeps one."""
    data_dir = str(system_grid.tmp / "workers" / "w1")
    args = ("worker", "--name", "w1", "--data-dir", data_dir, "--metrics", "nonsense")
    failed = system_grid.cli(*args, "--run-as", "root")
    assert failed.returncode != 0, failed.stderr
    assert "--metrics must be host:port" in failed.stderr
    assert not leftover_groups(system_grid)
