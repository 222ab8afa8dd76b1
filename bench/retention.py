"""Retention under load: does deleting ended tasks in the background slow dispatch?

Each round: a fresh SQLite file (sync=full) holding N ended tasks that ended long ago and D
queued `true` tasks; a master on it; a fleet of simulated workers (bench/fleet.py) times K
assignments. With `--retain 1s` the master deletes the N old tasks meanwhile (500 to a
transaction, 0.5 s at a time, yielding between batches); with `--retain 100d` it deletes
nothing. Alternating rounds; prints each rate and the median ratio (deleting / not).
Usage: python bench/retention.py [--ended N] [--depth D] [--measure K] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
from pathlib import Path

from fleet import Simulator
from grid import Grid

from gridrun.spec import make_spec
from gridrun.store import NewTask
from gridrun.store.sqlite import SqliteStore

WARMUP = 100


async def prefill(db: Path, ended: int) -> None:
    store = SqliteStore(db, synchronous="normal")
    await store.open()
    try:
        spec = make_spec(cmd="true")
        for start in range(0, ended, 10_000):
            count = min(10_000, ended - start)
            await store.tasks.add_tasks(
                [NewTask(f"old{start + i:08}", spec) for i in range(count)], 1
            )
    finally:
        await store.close()
    with sqlite3.connect(db) as conn:  # ended long ago (the counts follow by their trigger)
        conn.execute("UPDATE tasks SET state = 'succeeded', finished_at = 1000")


def measure(retain: str, args: argparse.Namespace) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="gridrun-retention-") as tmp:
        db = Path(tmp) / "gridrun.db"
        asyncio.run(prefill(db, args.ended))
        grid = Grid(Path(tmp), str(db), master_args=("--retain", retain))
        try:
            grid.start_masters()
            grid.submit(["true"], args.depth, batch=5000)
            address = f"127.0.0.1:{grid.ports[0][1]}"
            sim = Simulator(address, args.workers, args.slots, skip=WARMUP, count=args.measure)
            try:
                sim.expect("ready")
                rate = float(sim.expect("rate"))
            finally:
                sim.stop()
            kept = grid.client.get("/v1/stats").json()["tasks"]["succeeded"]
            return rate, kept
        finally:
            grid.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ended", type=int, default=200_000)
    parser.add_argument("--depth", type=int, default=3000)
    parser.add_argument("--measure", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--slots", type=int, default=4)
    args = parser.parse_args()
    ratios = []
    for n in range(1, args.rounds + 1):
        idle, _ = measure("100d", args)
        busy, left = measure("1s", args)
        ratios.append(busy / idle)
        gone = args.ended - left
        print(f"round {n}: no deletion {idle:7.1f} assignments/s; deleting {busy:7.1f}/s"
              f" ({gone:,} of {args.ended:,} old tasks deleted meanwhile)")  # fmt: skip
    print(f"deleting / not, median of {args.rounds}: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
