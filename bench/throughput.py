"""Throughput and latency of a local grid, against the machine's own limit and Celery, in one run.

A grid of real processes (fresh database, free ports): one master and 2 workers x S slots
(S = this machine's cores, the worker's default). For each command (`true`, and `sleep 0.05`):
  - gridrun: N tasks submitted in batches through POST /v1/tasks, timed from the first
    submission until all have ended (every one must succeed);
  - the local limit: `xargs -P <2 x S> -n 1` running the same command N times;
  - Celery 5 + Redis (127.0.0.1): 2 Celery workers x S processes (prefork) and a task that runs
    the command with subprocess, N tasks sent with apply_async, timed until every result is in.
Then `true` on 2 workers x 1 slot against `xargs -P 2` (SQLite; each slot waits on the master
after every task unless it holds one ahead: prefetch). Then one `true` task at a time (M
tasks): submit->started as the master recorded it (created_at
to started_at) and submit->finished as the client saw it, p50/p99.
With --db postgresql://... the grid is measured, in the same run, on SQLite, on PostgreSQL with
one master and with two (submissions alternate; each worker knows both).
Usage: python bench/throughput.py [--tasks N] [--sleep-tasks K] [--latency M] [--slots S]
       [--db postgresql://...] [--redis redis://...|none] [--profile PREFIX] [--prefetch P]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from grid import TERMINAL, Grid, database, percentile, start_profile, stop_profile, wait_for

BENCH = Path(__file__).resolve().parent
COMMANDS = {"true": ["true"], "sleep 0.05": ["sleep", "0.05"]}


def xargs_rate(argv: list[str], n: int, parallel: int) -> float:
    """The machine's own limit: xargs starting the command n times, `parallel` at once."""
    program, arg = (argv[:-1], argv[-1]) if len(argv) > 1 else (argv, "1")
    start = time.perf_counter()
    subprocess.run(
        ["xargs", "-P", str(parallel), "-n", "1", *program],
        input=f"{arg}\n".encode() * n, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return n / (time.perf_counter() - start)


def gridrun_rate(grid: Grid, argv: list[str], n: int) -> float:
    before = grid.client.get("/v1/stats").json()["tasks"]
    start = time.perf_counter()
    grid.submit(argv, n)

    def all_done() -> bool:
        counts = grid.client.get("/v1/stats").json()["tasks"]
        return sum(counts[s] - before[s] for s in TERMINAL) >= n

    wait_for(all_done, 900, "all tasks to finish", every=0.05)
    elapsed = time.perf_counter() - start
    counts = grid.client.get("/v1/stats").json()["tasks"]
    if counts["succeeded"] - before["succeeded"] != n:
        raise SystemExit(f"not every task succeeded: {counts}")
    return n / elapsed


def latencies(client: httpx.Client, m: int) -> tuple[list[float], list[float]]:
    """One task at a time: (submit->finished as the client saw it, submit->started as the
    master recorded it), in milliseconds."""
    finished, started = [], []
    for _ in range(m):
        start = time.perf_counter()
        task = client.post("/v1/tasks", json={"argv": ["true"]}).json()
        done = client.get(f"/v1/tasks/{task['id']}", params={"wait": 30}).json()
        finished.append((time.perf_counter() - start) * 1000)
        assert done["state"] == "succeeded", done
        created = datetime.fromisoformat(done["created_at"])
        began = datetime.fromisoformat(done["started_at"])
        started.append((began - created).total_seconds() * 1000)
    return sorted(finished), sorted(started)


def measure_grid(
    args: argparse.Namespace, server: str | None, masters: int, label: str
) -> dict[str, float]:
    """One configuration on a fresh grid and a fresh database."""
    result: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="gridrun-bench-") as tmp,
        database(server, Path(tmp)) as db,
    ):
        grid = Grid(Path(tmp), db, masters, db_sync=args.db_sync)
        if args.prefetch is not None:
            grid.worker_args = (*grid.worker_args, "--prefetch", str(args.prefetch))
        try:
            grid.start_masters()
            grid.start_workers(2, args.slots)
            latencies(grid.client, 20)  # warm up
            for name, argv, n in _runs(args):
                profile = None
                if args.profile and name == "true":
                    out = f"{args.profile}.{label.replace(' ', '-').replace(',', '')}"
                    profile = start_profile(out, grid.masters[0].pid)
                result[name] = gridrun_rate(grid, argv, n)
                if profile is not None:
                    stop_profile(profile, out)
            lat, to_start = latencies(grid.client, args.latency)
        finally:
            grid.stop()
    if not lat:  # --latency 0
        return result
    result.update(
        finished_p50=statistics.median(lat),
        finished_p99=percentile(lat, 0.99),
        started_p50=statistics.median(to_start),
        started_p99=percentile(to_start, 0.99),
    )
    return result


def celery_rates(args: argparse.Namespace) -> dict[str, float] | str:
    """Celery 5 + Redis running the same commands; or why it could not be measured."""
    try:
        import redis
        from celery_app import run, workers
    except ImportError as exc:
        return f"not measured ({exc}; pip install -e '.[bench]')"
    try:
        redis.Redis.from_url(args.redis).ping()
    except redis.RedisError as exc:
        return f"not measured (Redis at {args.redis}: {exc})"
    with workers(2, args.slots, args.redis):
        rates = {}
        for name, argv, n in _runs(args):
            start = time.perf_counter()
            results = [run.delay(argv) for _ in range(n)]
            codes = [r.get(timeout=600) for r in results]
            rates[name] = n / (time.perf_counter() - start)
            if any(codes):
                raise SystemExit(f"Celery: {sum(1 for c in codes if c)} commands failed")
        return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="`true` tasks")
    parser.add_argument("--sleep-tasks", type=int, default=400, help="`sleep 0.05` tasks")
    parser.add_argument("--latency", type=int, default=200)
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--db-sync", choices=["full", "normal"], default="full")
    parser.add_argument(
        "--prefetch", type=int, help="worker --prefetch (default: the worker's own default)"
    )
    parser.add_argument(
        "--db", help="a PostgreSQL server URL (postgresql://user@host:port/db) to compare with"
    )
    parser.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379/15",
        help="Redis for the Celery run (its database is flushed); 'none' skips Celery",
    )
    parser.add_argument("--profile", help="py-spy folded stacks of the first master to PREFIX.*")
    args = parser.parse_args()

    total = 2 * args.slots
    configs: list[tuple[str, str | None, int]] = [("sqlite, 1 master", None, 1)]
    if args.db:
        configs += [("postgresql, 1 master", args.db, 1), ("postgresql, 2 masters", args.db, 2)]
    limit = {name: [xargs_rate(argv, n, total)] for name, argv, n in _runs(args)}
    celery = celery_rates(args) if args.redis != "none" else "not measured (--redis none)"
    grids = {label: measure_grid(args, server, m, label) for label, server, m in configs}
    one_slot: tuple[float, float] | None = None  # (xargs -P 2, gridrun) for `true`
    if args.slots != 1 and args.tasks:  # each slot waits on the master in turn: the hard case
        one = argparse.Namespace(**{**vars(args), "slots": 1, "sleep_tasks": 0, "latency": 0})
        before = xargs_rate(["true"], args.tasks, 2)
        rate = measure_grid(one, None, 1, "sqlite 1 slot")["true"]
        one_slot = ((before + xargs_rate(["true"], args.tasks, 2)) / 2, rate)
    for name, argv, n in _runs(args):
        limit[name].append(xargs_rate(argv, n, total))

    prefetch = "default" if args.prefetch is None else args.prefetch
    print(f"machine: {os.cpu_count()} cores; 2 workers x {args.slots} slots, prefetch {prefetch};"
          f" sqlite sync="
          f"{args.db_sync}; {args.tasks} x true, {args.sleep_tasks} x sleep 0.05")  # fmt: skip
    for name, _, _ in _runs(args):
        base = statistics.mean(limit[name])
        print(f"\n[{name}]")
        print(f"  xargs -P {total:<15}: {base:8.1f} tasks/s  (before"
              f" {limit[name][0]:.1f}, after {limit[name][1]:.1f})")  # fmt: skip
        if isinstance(celery, dict):
            print(f"  celery+redis           : {celery[name]:8.1f} tasks/s  "
                  f"ratio to xargs {celery[name] / base:.3f}")  # fmt: skip
        else:
            print(f"  celery+redis           : {celery}")
        first = grids["sqlite, 1 master"][name]
        for label, r in grids.items():
            line = f"  gridrun, {label:22}: {r[name]:8.1f} tasks/s"
            line += f"  ratio to xargs {r[name] / base:.3f}"
            if isinstance(celery, dict):
                line += f", to celery {r[name] / celery[name]:.2f}"
            if r is not grids["sqlite, 1 master"]:
                line += f", to sqlite {r[name] / first:.2f}"
            print(line)
    if one_slot is not None:
        base, rate = one_slot
        print(f"\n[true, 2 workers x 1 slot]\n  xargs -P 2              : {base:8.1f} tasks/s")
        print(f"  gridrun, sqlite, 1 master      : {rate:8.1f} tasks/s  ratio to xargs"
              f" {rate / base:.3f}")  # fmt: skip
    if not args.latency:
        return
    print(f"\n[one `true` at a time, {args.latency} tasks]")
    for label, r in grids.items():
        print(f"  gridrun, {label:22}: submit->started p50 {r['started_p50']:.1f} ms,"
              f" p99 {r['started_p99']:.1f} ms; submit->finished p50 {r['finished_p50']:.1f} ms,"
              f" p99 {r['finished_p99']:.1f} ms")  # fmt: skip


def _runs(args: argparse.Namespace) -> list[tuple[str, list[str], int]]:
    runs = [
        (name, argv, args.tasks if name == "true" else args.sleep_tasks)
        for name, argv in COMMANDS.items()
    ]
    return [run for run in runs if run[2] > 0]  # --sleep-tasks 0: only `true`


if __name__ == "__main__":
    main()
