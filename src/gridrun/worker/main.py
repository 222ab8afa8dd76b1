"""The worker process's entry: run an Agent until a signal, with its metrics server if asked."""

from __future__ import annotations

import asyncio
import signal

from gridrun.errors import ConfigError
from gridrun.worker import metrics
from gridrun.worker.agent import Agent
from gridrun.worker.config import WorkerConfig


async def run_worker(config: WorkerConfig) -> None:
    """Run a worker until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    agent = Agent(config)
    server = None
    if config.metrics:
        watched = metrics.WorkerMetrics(agent.id, config.slots)
        agent.subscribe(watched.on_event)
        server = metrics.serve(watched, config.metrics)
    try:
        await agent.run(stop)
    finally:
        if server is not None:
            server[0].shutdown()
            server[0].server_close()
    if agent.refused is not None:
        raise ConfigError(agent.refused)
