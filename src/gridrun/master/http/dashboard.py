"""The dashboard: static files (no CDN, no build step) and the live overview they show.

The pages are plain HTML + JS under `web/`, talking to the same /v1 API as the CLI (with the
same bearer token when tokens are configured). The overview arrives as Server-Sent Events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gridrun.master.core.metrics import Metrics
from gridrun.master.core.service import Service
from gridrun.master.http.follow import sse
from gridrun.master.http.schemas import Distribution, HistoryOut, SampleOut
from gridrun.model import TaskState, WorkerState, workers_by_state

WEB = Path(__file__).with_name("web")
OVERVIEW_EVERY_S = 1.0
SPARK_BUCKETS, SPARK_BUCKET_S = 30, 10  # the sparkline: five minutes in ten-second buckets


async def overview(service: Service, metrics: Metrics) -> dict[str, Any]:
    counts = await service.count_by_state()
    workers = await service.workers()
    live = [w for w in workers if w.state is not WorkerState.OFFLINE]
    return {
        "tasks": {str(state): counts.get(state, 0) for state in TaskState},
        "queue_depth": counts.get(TaskState.QUEUED, 0),
        "workers": {str(s): n for s, n in workers_by_state(workers).items()},
        "slots": sum(w.slots for w in live),
        "slots_used": sum(w.running for w in live),
        "throughput": {
            "bucket_s": SPARK_BUCKET_S,
            "finished": metrics.throughput(service.clock.now_ms(), SPARK_BUCKETS, SPARK_BUCKET_S),
        },
        "at": time.time(),
    }


async def history(service: Service, metrics: Metrics) -> HistoryOut:
    """The charts' data: the samples kept and one taken now, and the distributions of
    what ended within them."""
    kept = metrics.history
    live = kept.now(service.clock.now_ms(), await service.count_by_state(), await service.workers())
    samples = kept.window(live)
    return HistoryOut(
        step_s=kept.step_s,
        samples=[
            SampleOut(
                at=s.at_ms,
                queued=s.queued,
                assigned=s.assigned,
                running=s.running,
                slots=s.slots,
                slots_used=s.slots_used,
                finished=s.finished,
                failed=s.failed,
            )
            for s in samples
        ],
        latency=Distribution(
            bounds_s=list(kept.latency_bounds),
            counts=[sum(column) for column in zip(*(s.latency for s in samples), strict=True)],
        ),
        duration=Distribution(
            bounds_s=list(kept.duration_bounds),
            counts=[sum(column) for column in zip(*(s.duration for s in samples), strict=True)],
        ),
    )


async def overview_events(service: Service, metrics: Metrics) -> AsyncIterator[bytes]:
    """An `overview` event now and every second after, until the master stops."""
    while not service.stopping.is_set():
        yield sse("overview", await overview(service, metrics))
        try:
            async with asyncio.timeout(OVERVIEW_EVERY_S):
                await service.stopping.wait()
        except TimeoutError:
            pass
