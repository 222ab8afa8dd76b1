"""What running tasks as another user costs: `true` tasks per second on a grid of real
processes (one master, 2 workers x S slots) whose root workers run tasks as root (no user
switch) or with their default (an unprivileged user, switched to by util-linux setpriv right
before the task's exec). Alternating A/B rounds on fresh grids; prints each round and the
median ratio. Needs root.
Usage: python bench/run_as.py [--tasks N] [--rounds R] [--slots S]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from grid import Grid
from throughput import gridrun_rate


def rate(worker_args: tuple[str, ...], tasks: int, slots: int) -> float:
    with tempfile.TemporaryDirectory(prefix="gridrun-bench-") as tmp:
        grid = Grid(Path(tmp), str(Path(tmp) / "gridrun.db"), worker_args=worker_args)
        try:
            grid.start_masters()
            grid.start_workers(2, slots)
            gridrun_rate(grid, ["true"], 200)  # warm up
            return gridrun_rate(grid, ["true"], tasks)
        finally:
            grid.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run it as root: a worker switches users only as root")
    ratios = []
    for n in range(1, args.rounds + 1):
        as_root = rate(("--run-as", "root"), args.tasks, args.slots)
        default = rate((), args.tasks, args.slots)
        ratios.append(default / as_root)
        print(
            f"round {n}: as root {as_root:7.1f}/s, default user {default:7.1f}/s,"
            f" ratio {default / as_root:.3f}",
            flush=True,
        )
    print(f"default user / as root, median of {args.rounds}: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
