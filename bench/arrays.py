"""Arrays: how fast a master takes one array job of N tasks (one request, one transaction)
against the batched POST /v1/tasks ingest of the same N in the same run, and what reading
the job back costs at that size.

Starts a master with no workers on a fresh SQLite file (sync=full), then, in turn: N tasks
through batches of 1,000 (ids answer: the ingest baseline); one array `0-(N-1)`; one array of
N items (a line each, as `--each-line` sends them); then times `GET /v1/jobs/ID?tasks=false`
(counts and the unsuccessful), `GET /v1/tasks?job=ID&index=K` (one index), `GET /v1/jobs` and
`GET /v1/stats` with 3N tasks queued. With --db postgresql://... the same on PostgreSQL.
Usage: python bench/arrays.py [--tasks N] [--db postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import httpx
from grid import database, lone_master


def timed(call: object) -> float:
    start = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - start


def best_ms(client: httpx.Client, path: str, params: dict[str, object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        client.get(path, params=params).raise_for_status()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def measure(db: str, tasks: int, tmp: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    with lone_master(db, tmp, "--max-body", "64MiB") as client:
        batch = json.dumps({"tasks": [{"argv": ["true"]}] * 1000}).encode()
        headers = {"content-type": "application/json", "prefer": "return=minimal"}
        client.post("/v1/tasks", content=batch, headers=headers).raise_for_status()  # warm

        def batches() -> None:
            for _ in range(tasks // 1000):
                r = client.post("/v1/tasks", content=batch, headers=headers)
                r.raise_for_status()

        figures["batches"] = tasks // 1000 * 1000 / timed(batches)
        made: dict[str, str] = {}

        def array() -> None:
            body = {"task": {"argv": ["true"]}, "array": f"0-{tasks - 1}"}
            r = client.post("/v1/arrays", json=body)
            r.raise_for_status()
            made["array"] = r.json()["id"]

        figures["array"] = tasks / timed(array)
        items = [f"/data/shard-{i:07d}.parquet --lr 0.{i % 97}" for i in range(tasks)]

        def with_items() -> None:
            body = {"task": {"argv": ["true"]}, "items": items}
            r = client.post("/v1/arrays", json=body)
            r.raise_for_status()
            made["items"] = r.json()["id"]

        figures["items"] = tasks / timed(with_items)
        job = made["array"]
        shown = client.get(f"/v1/jobs/{job}", params={"tasks": "false"}).json()
        if shown["size"] != tasks:
            raise SystemExit(f"expected {tasks} tasks in the array, got {shown['size']}")
        figures["job_ms"] = best_ms(client, f"/v1/jobs/{job}", {"tasks": "false"})
        figures["index_ms"] = best_ms(
            client, "/v1/tasks", {"job": job, "index": tasks // 2, "limit": 1}
        )
        figures["jobs_ms"] = best_ms(client, "/v1/jobs", {})
        figures["stats_ms"] = best_ms(client, "/v1/stats", {})
        figures["queued"] = client.get("/v1/stats").json()["tasks"]["queued"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--db", help="a PostgreSQL server URL to compare with")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="gridrun-arrays-") as tmp:
        results["sqlite"] = measure(str(Path(tmp) / "g.db"), args.tasks, tmp)
        if args.db:
            with database(args.db, Path(tmp)) as url:
                results["postgresql"] = measure(url, args.tasks, tmp)
    print(f"machine: {os.cpu_count()} cores; arrays of {args.tasks:,} tasks")
    for backend, f in results.items():
        base = f["batches"]
        print(f"{backend}: batched POST /v1/tasks (1,000 a request): {base:9,.0f} tasks/s")
        print(
            f"{backend}: one array 0-{args.tasks - 1}:            {f['array']:9,.0f} tasks/s"
            f"  ({f['array'] / base:.2f} x batches)"
        )
        print(
            f"{backend}: one array of {args.tasks:,} items:      {f['items']:9,.0f} tasks/s"
            f"  ({f['items'] / base:.2f} x batches)"
        )
        print(
            f"{backend}: with {f['queued']:,.0f} queued: GET /v1/jobs/ID {f['job_ms']:.1f} ms,"
            f" one index {f['index_ms']:.1f} ms, GET /v1/jobs {f['jobs_ms']:.1f} ms,"
            f" GET /v1/stats {f['stats_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
