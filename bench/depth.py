"""Queue depth: does dispatch slow down when the queue is deep?

For each depth D (default 1,000 and 1,000,000): a fresh master on SQLite (sync=full), and with
--db on a fresh PostgreSQL database too, with no
workers takes D `true` tasks through batched POST /v1/tasks; then a fleet of simulated workers
(bench/fleet.py: real gRPC streams answering each assignment at once) joins, and the simulator
times K assignments (after a warm-up of 100), all from the head of the same deep queue. The
ratio of the two rates shows whether a pass reads more than the head of the queue. Before the
fleet joins, it times GET /v1/stats (the counts per state the dashboard asks for every second).
With --blocked N, each depth is measured again with N tasks no worker can take (a label
nobody has, `on: zone=nowhere`) queued in front: the ratio shows whether what cannot run
holds up what can (issue 19: it must not).
Usage: python bench/depth.py [--depths 1000,1000000] [--measure K] [--workers W] [--slots S]
                             [--blocked N] [--settle S] [--no-vacuum] [--db postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

from fleet import Simulator
from grid import Grid, _admin, one_master

WARMUP = 100


def fill(grid: Grid, depth: int, batch: int = 5000, **extra: str) -> float:
    """Queue `depth` tasks; return the ingest rate (tasks/s) seen on the way."""
    task = {"argv": ["true"], **extra}
    body = json.dumps({"tasks": [task] * batch}).encode()
    headers = {"content-type": "application/json", "prefer": "return=minimal"}
    start = time.perf_counter()
    left = depth
    while left:
        size = min(batch, left)
        content = body if size == batch else json.dumps({"tasks": [task] * size})
        grid.client.post("/v1/tasks", content=content, headers=headers).raise_for_status()
        left -= size
    return depth / (time.perf_counter() - start)


def stats_ms(grid: Grid, calls: int = 21) -> float:
    """Median time of GET /v1/stats (tasks per state: what the dashboard asks every second)."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        grid.client.get("/v1/stats").raise_for_status()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure(
    depth: int, args: argparse.Namespace, server: str | None, blocked: int = 0
) -> tuple[float, float, float]:
    with one_master("gridrun-depth-", server) as grid:
        if blocked:
            fill(grid, blocked, on="zone=nowhere")
        ingest = fill(grid, depth)
        if server is not None and args.vacuum:
            # what autovacuum does within a minute or two of a bulk insert (it wakes once a
            # minute): timing right after the insert measures PostgreSQL catching up
            asyncio.run(_admin(grid.db, "VACUUM ANALYZE tasks"))
        time.sleep(args.settle)
        stats = stats_ms(grid)
        address = f"127.0.0.1:{grid.ports[0][1]}"
        sim = Simulator(address, args.workers, args.slots, skip=WARMUP, count=args.measure)
        try:
            sim.expect("ready")
            return ingest, stats, float(sim.expect("rate"))
        finally:
            sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="1000,1000000")
    parser.add_argument("--measure", type=int, default=800, help="assignments timed (K)")
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--blocked", type=int, default=0, help="unplaceable tasks in front")
    parser.add_argument(
        "--settle", type=float, default=0, help="seconds to wait after filling, before timing"
    )
    parser.add_argument(
        "--no-vacuum",
        dest="vacuum",
        action="store_false",
        help="PostgreSQL: time right after the fill, before any VACUUM ANALYZE of it",
    )
    parser.add_argument("--db", help="also on PostgreSQL: a URL of an existing database there")
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    if min(depths) < WARMUP + args.measure:
        parser.error(f"every depth must hold the warm-up and the measure ({WARMUP + args.measure})")
    print(f"machine: {os.cpu_count()} cores; SQLite sync=full; {args.workers} simulated workers"
          f" x {args.slots} slots; {args.measure} assignments timed after {WARMUP}")  # fmt: skip
    for server in [None, args.db] if args.db else [None]:
        rates = {}
        label = "postgresql" if server else "sqlite"
        for depth in depths:
            ingest, stats, rates[depth] = measure(depth, args, server)
            ratio = f"  ({rates[depth] / rates[depths[0]]:.2f} x at {depths[0]:,})"
            print(f"{label:<10} {depth:>9,} queued: dispatch {rates[depth]:7.1f} tasks/s{ratio}"
                  f"  (filled at {ingest:,.0f} tasks/s; GET /v1/stats {stats:.1f} ms)")  # fmt: skip
            if args.blocked:
                _, _, rate = measure(depth, args, server, args.blocked)
                print(f"{label:<10} {depth:>9,} queued behind {args.blocked:,} unplaceable:"
                      f" dispatch {rate:7.1f} tasks/s  ({rate / rates[depth]:.2f} x none in"
                      " front)")  # fmt: skip


if __name__ == "__main__":
    main()
