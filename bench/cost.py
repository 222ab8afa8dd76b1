"""The CPU one task costs, and where it goes: N `true` tasks (batched submit) on a grid of 2
workers x S slots (default 1) whose root workers run tasks with their default identity (a uid
of its own for each, contained in cgroups: what a user gets), against `xargs -P 2S true` on the
same machine in the same run. For each: tasks per second, the whole machine's CPU a task
(/proc/stat, every process counted), and for gridrun the share of the master, the workers,
their spawners and the tasks' own processes (what the workers and spawners reaped).
With `--against DIR` (another checkout's src directory), the same grid runs that code too,
alternating rounds, so a change is measured against what it replaced in one run.
With `--peers`, Celery 5 + Redis (2 prefork workers x S) and HyperQueue (its LocalCluster, 2
workers x S cores) run the same tasks in the same round.
With `--db URL` (PostgreSQL), the grid runs on a database of its own there too, with 1 master
and with `--masters` (default 2): "master" is then a master's average, "postgres" the server's
processes together.
Usage: python bench/cost.py [--tasks N] [--rounds R] [--slots S] [--against SRC]
       [--cmd 'sleep 0.05'] [--peers] [--redis URL] [--db URL [--masters N]]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from grid import Grid, cpu_seconds, database
from throughput import gridrun_rate

HZ = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all but idle and iowait)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / HZ


def reaped(pid: int) -> float:
    """CPU of the children a process has reaped (cutime + cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / HZ


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def is_spawner(pid: int) -> bool:
    try:
        return b"spawner.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def xargs(argv: list[str], n: int, parallel: int) -> dict[str, float]:
    program, arg = (argv[:-1], argv[-1]) if len(argv) > 1 else (argv, "1")
    busy, began = machine_busy(), time.perf_counter()
    subprocess.run(
        ["xargs", "-P", str(parallel), "-n", "1", *program],
        input=f"{arg}\n".encode() * n, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    elapsed = time.perf_counter() - began
    return {"rate": n / elapsed, "machine": (machine_busy() - busy) / n * 1000}


def measured(n: int, run: Callable[[], None]) -> dict[str, float]:
    busy, began = machine_busy(), time.perf_counter()
    run()
    elapsed = time.perf_counter() - began
    return {"rate": n / elapsed, "machine": (machine_busy() - busy) / n * 1000}


def celery(argv: list[str], n: int, slots: int, redis_url: str) -> dict[str, float] | str:
    """Celery 5 + Redis, 2 prefork workers x `slots` (bench/celery_app.py)."""
    try:
        import redis
        from celery_app import run, workers
    except ImportError as exc:
        return f"not measured ({exc}; pip install -e '.[bench]')"
    try:
        redis.Redis.from_url(redis_url).ping()
    except redis.RedisError as exc:
        return f"not measured (Redis at {redis_url}: {exc})"

    def all_of_them() -> None:
        codes = [r.get(timeout=600) for r in [run.delay(argv) for _ in range(n)]]
        if any(codes):
            raise SystemExit(f"Celery: {sum(1 for c in codes if c)} commands failed")

    with workers(2, slots, redis_url, name="cost"):
        return measured(n, all_of_them)


def hyperqueue(argv: list[str], n: int, slots: int) -> dict[str, float] | str:
    """HyperQueue's LocalCluster (pip package `hyperqueue`): a server and 2 workers x `slots`
    cores; one job of n tasks, submitted and waited for."""
    try:
        from hyperqueue import Job, LocalCluster
        from hyperqueue.cluster import WorkerConfig
    except ImportError as exc:
        return f"not measured ({exc}; pip install hyperqueue)"
    with tempfile.TemporaryDirectory(prefix="gridrun-bench-hq-") as tmp:
        cluster = LocalCluster(tmp)  # type: ignore[arg-type]  # (it wants a str)
        try:
            for _ in range(2):
                cluster.start_worker(WorkerConfig(cores=slots))
            client = cluster.client()

            def one_job(count: int) -> None:
                job = Job()
                for _ in range(count):
                    job.program(argv, stdout=None, stderr=None)
                client.wait_for_jobs([client.submit(job)])

            one_job(40)  # warm up
            return measured(n, lambda: one_job(n))
        finally:
            cluster.stop()


def postgres_servers() -> list[int]:
    """The PostgreSQL server's processes on this machine (the postmaster and its children)."""
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                found.append(int(comm.parent.name))
        except OSError:
            continue
    return found


def gridrun(
    argv: list[str], n: int, slots: int, src: str | None, db: str | None = None, masters: int = 1
) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory(prefix="gridrun-bench-") as tmp,
        database(db, Path(tmp)) as url,
    ):
        grid = Grid(Path(tmp), url, masters, worker_args=())
        if src is not None:
            grid.env["PYTHONPATH"] = src
        try:
            grid.start_masters()
            grid.start_workers(2, slots)
            gridrun_rate(grid, ["true"], 200)  # warm up
            heads = [m.pid for m in grid.masters]
            servers = postgres_servers() if db is not None else []
            workers = [w.pid for w in grid.workers]
            spawners = [c for w in workers for c in children(w) if is_spawner(c)]
            helpers = [c for w in workers for c in children(w) if c not in spawners]

            def sample() -> dict[str, float]:
                return {
                    "machine": machine_busy(),
                    "master": sum(cpu_seconds(m) for m in heads) / len(heads),
                    "postgres": sum(_cpu_or_zero(p) for p in servers),
                    "workers": sum(cpu_seconds(w) for w in workers),
                    "spawners": sum(cpu_seconds(s) for s in spawners),
                    "tasks": sum(reaped(p) for p in [*workers, *spawners]),
                    "others": sum(cpu_seconds(h) for h in helpers),
                }

            before, began = sample(), time.perf_counter()
            gridrun_rate(grid, argv, n)
            elapsed = time.perf_counter() - began
            after = sample()
            found = {k: (after[k] - before[k]) / n * 1000 for k in before}
            found["rate"] = n / elapsed
            return found
        finally:
            grid.stop()


def _cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:  # (a backend that has ended)
        return 0.0


def show(label: str, found: dict[str, float] | str, floor: dict[str, float]) -> None:
    if isinstance(found, str):
        print(f"{label:9} {found}")
        return
    parts = [f"{label:9} {found['rate']:7.1f}/s ({found['rate'] / floor['rate']:.3f} x xargs)",
             f"machine {found['machine']:.2f} ms/task"]  # fmt: skip
    for key in ("master", "postgres", "workers", "spawners", "tasks", "others"):
        if found.get(key):
            parts.append(f"{key} {found[key]:.2f}")
    print("; ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--against", help="another checkout's src directory, measured too")
    parser.add_argument("--cmd", default="true", help="the task (split like a shell would)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15", help="for Celery")
    parser.add_argument("--peers", action="store_true", help="Celery + Redis and HyperQueue too")
    parser.add_argument("--db", help="a PostgreSQL URL: also a grid on a database of its own there")
    parser.add_argument("--masters", type=int, default=2, help="with --db: this many masters too")
    args = parser.parse_args()
    argv = shlex.split(args.cmd)
    print(f"{os.cpu_count()} cores; 2 workers x {args.slots}; {args.tasks} x {args.cmd!r}"
          f" a round; CPU in ms a task")  # fmt: skip
    ratios: dict[str, list[tuple[float, float]]] = {"sqlite": [], "pg": []}
    for n in range(1, args.rounds + 1):
        floor = xargs(argv, args.tasks, 2 * args.slots)
        print(f"round {n}")
        show("xargs", floor, floor)
        if args.peers:
            show("celery", celery(argv, args.tasks, args.slots, args.redis), floor)
            show("hq", hyperqueue(argv, args.tasks, args.slots), floor)
        now = gridrun(argv, args.tasks, args.slots, None)
        show("gridrun", now, floor)
        if args.against:
            then = gridrun(argv, args.tasks, args.slots, args.against)
            show("against", then, floor)
            ratios["sqlite"].append((now["rate"] / then["rate"], now["machine"] / then["machine"]))
        if args.db:
            pg = gridrun(argv, args.tasks, args.slots, None, args.db)
            show("pg", pg, floor)
            if args.against:
                then = gridrun(argv, args.tasks, args.slots, args.against, args.db)
                show("pg against", then, floor)
                ratios["pg"].append((pg["rate"] / then["rate"], pg["machine"] / then["machine"]))
            if args.masters > 1:
                label = f"pg x{args.masters}"
                show(
                    label, gridrun(argv, args.tasks, args.slots, None, args.db, args.masters), floor
                )
    for backend, found in ratios.items():
        if found:
            print(
                f"{backend}: this code / --against, median of {len(found)}: throughput"
                f" {statistics.median(r for r, _ in found):.3f}, machine CPU a task"
                f" {statistics.median(m for _, m in found):.3f}"
            )


if __name__ == "__main__":
    main()
