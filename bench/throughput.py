"""Throughput and latency of a local grid, against the machine's own limit in the same run.

Starts `gridrun up --workers 2 --slots 1` (real processes, fresh data dir, free ports), then:
  1. N tasks running `true`, submitted in batches through POST /v1/tasks, timed from the first
     submission until all are terminal; and `seq N | xargs -P 2 -n 1 true` on the same machine.
  2. submit->finish latency of one `true` task at a time (M tasks), measured by the client.
Prints tasks/s for both and the ratio. Usage: python bench/throughput.py [--tasks N] [--latency M]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from gridrun import model

TERMINAL = tuple(str(state) for state in model.TERMINAL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def xargs_rate(n: int, parallel: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        f"seq {n} | xargs -P {parallel} -n 1 true",
        shell=True,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return n / (time.perf_counter() - start)


def gridrun_rate(client: httpx.Client, n: int, batch: int = 1000) -> float:
    before = client.get("/v1/stats").json()["tasks"]
    done_before = sum(before[s] for s in TERMINAL)
    start = time.perf_counter()
    for offset in range(0, n, batch):
        size = min(batch, n - offset)
        response = client.post("/v1/tasks", json={"tasks": [{"argv": ["true"]}] * size})
        response.raise_for_status()

    def all_done() -> bool:
        counts = client.get("/v1/stats").json()["tasks"]
        return sum(counts[s] for s in TERMINAL) - done_before >= n

    wait_for(all_done, 600, "all tasks to finish")
    elapsed = time.perf_counter() - start
    counts = client.get("/v1/stats").json()["tasks"]
    if counts["succeeded"] - before["succeeded"] != n:
        raise SystemExit(f"not every task succeeded: {counts}")
    return n / elapsed


def latencies(client: httpx.Client, m: int) -> list[float]:
    samples = []
    for _ in range(m):
        start = time.perf_counter()
        task = client.post("/v1/tasks", json={"argv": ["true"]}).json()
        done = client.get(f"/v1/tasks/{task['id']}", params={"wait": 30}).json()
        samples.append(time.perf_counter() - start)
        assert done["state"] == "succeeded", done
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--latency", type=int, default=200)
    parser.add_argument("--db-sync", choices=["full", "normal"], default="full")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gridrun-bench-") as tmp:
        http, grpc = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDRUN_")}
        env["GRIDRUN_DB_SYNC"] = args.db_sync
        up = subprocess.Popen(
            [sys.executable, "-m", "gridrun", "up", "--workers", "2", "--slots", "1",
             "--data-dir", str(Path(tmp) / "data"), "--http", f"127.0.0.1:{http}",
             "--grpc", f"127.0.0.1:{grpc}", "--log-level", "warning"],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=60)

            def two_workers() -> bool:
                try:
                    return client.get("/v1/stats").json()["workers"]["online"] == 2
                except httpx.TransportError:
                    return False

            wait_for(two_workers, 60, "the grid to start")
            latencies(client, 20)  # warm up
            xargs = xargs_rate(args.tasks, 2)
            grid = gridrun_rate(client, args.tasks)
            xargs_after = xargs_rate(args.tasks, 2)
            lat = latencies(client, args.latency)
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=60)

    baseline = (xargs + xargs_after) / 2
    print(f"machine: {os.cpu_count()} cores; master db sync={args.db_sync}; 2 workers x 1 slot")
    print(
        f"xargs -P 2 -n 1 true      : {baseline:8.1f} tasks/s  (before {xargs:.1f}, after"
        f" {xargs_after:.1f})"
    )
    print(f"gridrun, {args.tasks} x true     : {grid:8.1f} tasks/s")
    print(f"ratio gridrun / xargs     : {grid / baseline:8.3f}")
    lat_ms = sorted(x * 1000 for x in lat)
    p99 = lat_ms[min(len(lat_ms) - 1, int(len(lat_ms) * 0.99))]
    median = statistics.median(lat_ms)
    print(
        f"submit->finish, one at a time ({args.latency}): median {median:.1f} ms, p99 {p99:.1f} ms"
    )


if __name__ == "__main__":
    main()
