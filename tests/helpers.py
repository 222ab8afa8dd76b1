"""Shared test helpers: polling with a deadline (never bare sleeps), free ports, pid checks."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from gridrun.clock import ShiftedClock  # noqa: F401 (tests use it from here)
from gridrun.dispatching import Active, Candidate, Placed, Quota
from gridrun.model import Task
from gridrun.store import Store

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Call `check` until it returns a truthy value (returned) or raise after `timeout`."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {last or check}")
        time.sleep(interval)


async def eventually_async(
    check: Callable[[], Awaitable[T] | T], timeout: float = 10.0, interval: float = 0.02
) -> T:
    """`eventually` for async tests: the loop keeps running while we wait. `check` may be sync."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            value = await result if inspect.isawaitable(result) else result
            if value:
                return value
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {last or check}")
        await asyncio.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # (ESRCH: it was exiting as we read)
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def read_pid(path: Path) -> int:
    return int(path.read_text().strip())


def wait_file(path: Path, timeout: float = 10.0) -> str:
    return eventually(lambda: path.exists() and path.read_text().strip(), timeout)


async def wait_file_async(path: Path, timeout: float = 10.0) -> str:
    return await eventually_async(lambda: path.exists() and path.read_text().strip(), timeout)


NO_CLIENT_CONFIG = "/nonexistent/gridrun-tests/config.toml"


def env_without_gridrun() -> dict[str, str]:
    """The environment minus every GRIDRUN_* setting, and no CLI config file either."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDRUN_")}
    env["GRIDRUN_CONFIG"] = NO_CLIENT_CONFIG
    return env


async def claim(store: Store, pairs: Sequence[tuple[str, str]], now: int) -> list[Task]:
    """Claim (task id, worker id) pairs the way dispatch does (`plan_and_claim` over the
    queue's lanes), with a plan that picks exactly these pairs among the tasks it reads."""
    wanted = dict(pairs)

    def plan(heads: dict[str, list[Candidate]], active: Active, quotas: Sequence[Quota]) -> Placed:
        return [
            (c, wanted[c.task_id]) for lane in heads.values() for c in lane if c.task_id in wanted
        ]

    lanes = await store.dispatch.queued_lanes("", 10_000)
    return (await store.dispatch.plan_and_claim(lanes, 10_000, now, plan)).claimed


NO_CGROUPS = "no usable cgroups here (a root worker and a cgroup file system it can write)"


@functools.cache
def cgroups_usable() -> bool:
    """Whether a worker here would contain its tasks in cgroups that limit memory and CPU
    (root alone is not enough: a network namespace, a container may hide or lock them).
    Tests of what only cgroups do skip elsewhere, with NO_CGROUPS as the reason."""
    from gridrun.worker.containment import choose

    try:
        found = choose(f"gridrun-probe-{os.getpid()}", "auto", None)
    except OSError:
        return False
    return found.mode == "cgroup" and found.enforced() >= {"memory", "cpu"}
