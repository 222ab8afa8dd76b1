"""Ingest: how many tasks per second a master accepts (committed) through batched POST /v1/tasks.

Starts a master with no workers (so nothing is dispatched meanwhile) on a fresh SQLite file
(sync=full, every commit fsynced) and, with --db postgresql://..., on a fresh PostgreSQL database
in the same run; posts N `true` tasks in batches of B from one client, each batch acknowledged
only once committed. Prints tasks/s for each and the ratio PostgreSQL/SQLite.
Usage: python bench/ingest.py [--tasks N] [--batch B] [--db postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from grid import database, free_port, wait_for


def ingest_rate(db: str, tasks: int, batch: int, tmp: str) -> float:
    http = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDRUN_")}
    master = subprocess.Popen(
        [sys.executable, "-m", "gridrun", "master", "--db", db, "--db-sync", "full",
         "--http", f"127.0.0.1:{http}", "--grpc", f"127.0.0.1:{free_port()}",
         "--log-level", "warning"],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=120) as client:

            def ready() -> bool:
                try:
                    return client.get("/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(ready, 60, "the master to start")
            body = json.dumps({"tasks": [{"argv": ["true"]}] * batch}).encode()
            headers = {"content-type": "application/json"}
            client.post("/v1/tasks", content=body, headers=headers).raise_for_status()  # warm
            start = time.perf_counter()
            for _ in range(tasks // batch):
                client.post("/v1/tasks", content=body, headers=headers).raise_for_status()
            elapsed = time.perf_counter() - start
            queued = client.get("/v1/stats").json()["tasks"]["queued"]
            if queued != (tasks // batch + 1) * batch:
                raise SystemExit(f"expected {(tasks // batch + 1) * batch} queued, got {queued}")
            return (tasks // batch) * batch / elapsed
    finally:
        master.send_signal(signal.SIGINT)
        master.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--db", help="a PostgreSQL server URL to compare with")
    args = parser.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gridrun-ingest-") as tmp:
        results["sqlite"] = ingest_rate(str(Path(tmp) / "g.db"), args.tasks, args.batch, tmp)
        if args.db:
            with database(args.db, Path(tmp)) as url:
                results["postgresql"] = ingest_rate(url, args.tasks, args.batch, tmp)
    print(f"machine: {os.cpu_count()} cores; {args.tasks} tasks in batches of {args.batch}")
    for backend, rate in results.items():
        ratio = f"  ({rate / results['sqlite']:.2f} x sqlite)" if backend != "sqlite" else ""
        print(f"ingest into {backend:10}: {rate:9.0f} tasks/s{ratio}")


if __name__ == "__main__":
    main()
