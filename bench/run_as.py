"""What running tasks as another user costs: `true` tasks per second, and submit->finished of
one task at a time (p50), on a grid of real processes (one master, 2 workers x S slots) whose
root workers run tasks as root (no user switch) or with their default (a uid of its own for
each task, switched to by the spawner's child right before the task's exec). With
`--against shared`, the default is measured against every task as one shared user
(`--run-as nobody`, the default before tasks had an identity each): what the per-task uid,
its lock and its private HOME/TMPDIR cost. Alternating A/B rounds on fresh grids; prints each
round and the median ratios. Needs root.
Usage: python bench/run_as.py [--tasks N] [--rounds R] [--slots S] [--against root|shared]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from grid import Grid
from throughput import gridrun_rate, latencies


def rate(
    worker_args: tuple[str, ...], tasks: int, slots: int, argv: tuple[str, ...] = ("true",)
) -> tuple[float, float]:
    """(tasks of `argv` per second, p50 submit->finished of `true` in ms) on a fresh grid."""
    with tempfile.TemporaryDirectory(prefix="gridrun-bench-") as tmp:
        grid = Grid(Path(tmp), str(Path(tmp) / "gridrun.db"), worker_args=worker_args)
        try:
            grid.start_masters()
            grid.start_workers(2, slots)
            gridrun_rate(grid, ["true"], 200)  # warm up
            per_s = gridrun_rate(grid, list(argv), tasks)
            finished, _ = latencies(grid.client, 100)
            return per_s, statistics.median(finished)
        finally:
            grid.stop()


def compare(
    base: tuple[str, tuple[str, ...]],
    other: tuple[str, tuple[str, ...]],
    rounds: int,
    tasks: int,
    slots: int,
    argv: tuple[str, ...] = ("true",),
) -> None:
    """Alternating rounds of `rate` on fresh grids with the base's worker args and the
    other's (each a label and the args); print each round and the median ratios other/base."""
    (base_name, base_args), (other_name, other_args) = base, other
    rates, waits = [], []
    for n in range(1, rounds + 1):
        base_rate, base_ms = rate(base_args, tasks, slots, argv)
        other_rate, other_ms = rate(other_args, tasks, slots, argv)
        rates.append(other_rate / base_rate)
        waits.append(other_ms / base_ms)
        print(
            f"round {n} ({' '.join(argv)}): {base_name} {base_rate:6.1f}/s p50 {base_ms:5.1f} ms;"
            f" {other_name} {other_rate:6.1f}/s p50 {other_ms:5.1f} ms",
            flush=True,
        )
    print(
        f"{other_name} / {base_name}, median of {rounds}: throughput"
        f" {statistics.median(rates):.3f}, p50 submit->finished (true)"
        f" {statistics.median(waits):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--against", choices=["root", "shared"], default="root")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run it as root: a worker switches users only as root")
    base = (
        ("as root", ("--run-as", "root"))
        if args.against == "root"
        else ("shared user nobody", ("--run-as", "nobody"))
    )
    compare(base, ("a uid each", ()), args.rounds, args.tasks, args.slots)


if __name__ == "__main__":
    main()
