"""The Celery side of bench/throughput.py: one task that runs a command, as gridrun's workers do.

Broker and result backend are Redis (GRIDRUN_BENCH_REDIS, default redis://127.0.0.1:6379/15).
Celery's defaults otherwise: prefork pool, acknowledgement before the task runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from celery import Celery

REDIS = os.environ.get("GRIDRUN_BENCH_REDIS", "redis://127.0.0.1:6379/15")
app = Celery("gridrun_bench", broker=REDIS, backend=REDIS)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="gridrun_bench.run")
def run(argv: list[str]) -> int:
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    return done.returncode  # output captured, as gridrun keeps it


@contextlib.contextmanager
def workers(count: int, slots: int, redis_url: str, name: str = "bench") -> Iterator[None]:
    """`count` Celery workers of `slots` prefork processes each on this app, ready (a few
    tasks answered) while the block runs; the bench's Redis database emptied before and after."""
    import redis

    app.conf.update(broker_url=redis_url, result_backend=redis_url)
    redis.Redis.from_url(redis_url).flushdb()  # the bench's own database number
    command = [
        sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-c", str(slots),
        "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning",
    ]  # fmt: skip
    procs = [
        subprocess.Popen(
            [*command, "-n", f"{name}{i}@%h"],
            cwd=Path(__file__).parent,
            env={**os.environ, "GRIDRUN_BENCH_REDIS": redis_url},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(count)
    ]
    try:
        for r in [run.delay(["true"]) for _ in range(40)]:  # warm up: every worker ready
            r.get(timeout=120)
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        redis.Redis.from_url(redis_url).flushdb()
