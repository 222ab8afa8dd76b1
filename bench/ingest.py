"""Ingest: how many tasks per second a master accepts (committed) through batched POST /v1/tasks.

Starts a master with no workers (so nothing is dispatched meanwhile) on a fresh SQLite file
(sync=full, every commit fsynced) and, with --db postgresql://..., on a fresh PostgreSQL database
in the same run; posts N `true` tasks in batches of B from one client, each batch acknowledged
only once committed: once answered with the stored tasks (the default), once with their ids only
(`Prefer: return=minimal`, as `gridrun submit --file` asks). Prints tasks/s for each and the
ratio PostgreSQL/SQLite.
With --clients C (default 2) the same again from C connections posting at once, as several
submitters (or one client posting batches in parallel) would.
Usage: python bench/ingest.py [--tasks N] [--batch B] [--clients C] [--db postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from grid import database, lone_master

ANSWERS = {"tasks": None, "ids": "return=minimal"}


def post_all(url: str, body: bytes, prefer: str | None, posts: int, clients: int) -> float:
    """Post `posts` batches over `clients` connections at once; seconds from first to last."""
    headers = {"content-type": "application/json", **({"prefer": prefer} if prefer else {})}
    connections = [httpx.Client(base_url=url, timeout=120) for _ in range(clients)]
    try:
        for c in connections:
            c.post("/v1/tasks", content=body, headers=headers).raise_for_status()  # warm

        def share(c: httpx.Client, n: int) -> None:
            for _ in range(n):
                c.post("/v1/tasks", content=body, headers=headers).raise_for_status()

        shares = [posts // clients + (i < posts % clients) for i in range(clients)]
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(share, connections, shares))
        return time.perf_counter() - start
    finally:
        for c in connections:
            c.close()


def ingest_rates(
    db: str, tasks: int, batch: int, runs: list[tuple[str, int]], tmp: str
) -> dict[tuple[str, int], float]:
    with lone_master(db, tmp) as client:
        url = str(client.base_url)
        body = json.dumps({"tasks": [{"argv": ["true"]}] * batch}).encode()
        posts = tasks // batch
        rates = {}
        for answer, clients in runs:
            elapsed = post_all(url, body, ANSWERS[answer], posts, clients)
            rates[answer, clients] = posts * batch / elapsed
        queued = client.get("/v1/stats").json()["tasks"]["queued"]
        expected = sum(posts + clients for _, clients in runs) * batch
        if queued != expected:
            raise SystemExit(f"expected {expected} queued, got {queued}")
        return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2, help="connections posting at once")
    parser.add_argument("--db", help="a PostgreSQL server URL to compare with")
    args = parser.parse_args()
    runs = [("tasks", 1), ("ids", 1), ("tasks", args.clients), ("ids", args.clients)]
    runs = list(dict.fromkeys(runs))
    results: dict[str, dict[tuple[str, int], float]] = {}
    with tempfile.TemporaryDirectory(prefix="gridrun-ingest-") as tmp:
        db = str(Path(tmp) / "g.db")
        results["sqlite"] = ingest_rates(db, args.tasks, args.batch, runs, tmp)
        if args.db:
            with database(args.db, Path(tmp)) as url:
                results["postgresql"] = ingest_rates(url, args.tasks, args.batch, runs, tmp)
    print(f"machine: {os.cpu_count()} cores; {args.tasks} tasks in batches of {args.batch}")
    for backend, rates in results.items():
        for (answer, clients), rate in rates.items():
            base = results["sqlite"][answer, clients]
            ratio = f"  ({rate / base:.2f} x sqlite)" if backend != "sqlite" else ""
            print(
                f"ingest into {backend:10}, {clients} client(s), answered with {answer:5}:"
                f" {rate:9.0f} tasks/s{ratio}"
            )


if __name__ == "__main__":
    main()
