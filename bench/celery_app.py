"""The Celery side of bench/throughput.py: one task that runs a command, as gridrun's workers do.

Broker and result backend are Redis (GRIDRUN_BENCH_REDIS, default redis://127.0.0.1:6379/15).
Celery's defaults otherwise: prefork pool, acknowledgement before the task runs.
"""

from __future__ import annotations

import os
import subprocess

from celery import Celery

REDIS = os.environ.get("GRIDRUN_BENCH_REDIS", "redis://127.0.0.1:6379/15")
app = Celery("gridrun_bench", broker=REDIS, backend=REDIS)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="gridrun_bench.run")
def run(argv: list[str]) -> int:
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    return done.returncode  # output captured, as gridrun keeps it
