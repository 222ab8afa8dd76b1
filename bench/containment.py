"""What containment costs, in one run:
  1. at the worker: the wall time of one `true` attempt (spawn, run, reap, kill what is left,
     read its usage, remove its cgroup), one after another, N times, for each mode: none (a
     process group only), cgroup (a group in each hierarchy: v1 groups are reused, the spawner's
     thread joins them for the fork; v2 groups are new, the child is cloned into its group) and
     subreaper; on a hybrid host also "cgroup v2", its bare v2 hierarchy alone (how a pure v2
     host places the child, without the controllers);
  2. on a grid of real processes (one master, 2 workers x S slots, tasks as root): `true` tasks
     per second and p50 submit->finished with --containment none and with the default (cgroup
     as root), alternating rounds on fresh grids.
Prints each figure and the ratios to `none` measured in the same run. Needs root for cgroups.
Usage: python bench/containment.py [--attempts N] [--tasks N] [--rounds R] [--slots S]
       [--sleep SECONDS]  (tasks `sleep SECONDS` instead of `true`)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from run_as import compare

from gridrun.model import AttemptRef
from gridrun.worker import containment
from gridrun.worker.cgroups import GroupLimits
from gridrun.worker.executor import Assignment, Execution
from gridrun.worker.hierarchies import discover
from gridrun.worker.policy import Launch
from gridrun.worker.spawning import Spawner


async def attempt_ms(
    box_of: containment.Containment, n: int, spawner: Spawner, argv: tuple[str, ...]
) -> float:
    """Median wall time of one attempt of `argv`, in ms."""
    times = []
    launch = Launch(argv=argv, env={"PATH": os.environ["PATH"]}, cwd=None)
    for i in range(n):
        ref = AttemptRef(f"bench{i}", 1)
        began = time.perf_counter()
        box = box_of.box(ref, GroupLimits(pids=4096))
        execution = Execution(
            Assignment(ref, argv), launch, lambda e: None, box=box, spawner=spawner
        )
        await execution.run()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


async def per_attempt(n: int, argv: tuple[str, ...]) -> dict[str, float]:
    modes: dict[str, containment.Containment] = {"none": containment.Containment()}
    if os.geteuid() == 0:
        modes["cgroup"] = containment.choose(f"gridrun.bench.{os.getpid()}", "cgroup", None)
        v2 = [h for h in discover() if h.version == 2]
        if v2 and getattr(modes["cgroup"], "v2", None) is None:
            # a hybrid host's bare v2 alone: a pure v2 host's way of placing the child
            # (cloned into its group), without the controllers
            modes["cgroup v2"] = containment.Cgroups(f"gridrun.bench.v2.{os.getpid()}", v2, None)
    modes["subreaper"] = containment.Subreaper()
    found = {}
    for name, mode in modes.items():
        mode.start()
        spawner = Spawner(mode.home())
        try:
            await attempt_ms(mode, 20, spawner, argv)  # warm up
            found[name] = await attempt_ms(mode, n, spawner, argv)
        finally:
            spawner.close()
            mode.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=300)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sleep", type=float, default=0, help="tasks sleep this, not true")
    args = parser.parse_args()
    argv = ("sleep", f"{args.sleep:g}") if args.sleep else ("true",)
    found = asyncio.run(per_attempt(args.attempts, argv))
    for name, ms in found.items():
        print(f"one {' '.join(argv)!r} attempt, {name:9}: {ms:6.2f} ms"
              f"  ratio to none {ms / found['none']:.2f}")  # fmt: skip
    if os.geteuid() != 0:
        print("grid figures need root (cgroups): skipped")
        return
    uncontained = ("--run-as", "root", "--containment", "none")
    cgroup = ("--run-as", "root")
    compare(("none", uncontained), ("cgroup", cgroup), args.rounds, args.tasks, args.slots, argv)


if __name__ == "__main__":
    main()
