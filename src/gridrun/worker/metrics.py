"""A worker's own Prometheus metrics, on an optional address (`gridrun worker --metrics`).

Read from the agent when scraped: slots, running tasks, whether the master stream is up,
results waiting for the master's acknowledgement, attempts ended per outcome, output dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gridrun.errors import ConfigError
from gridrun.model import Outcome

if TYPE_CHECKING:
    from gridrun.worker.agent import Agent


class AgentCollector(Collector):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        labels = ["worker_id"]
        me = [agent.id]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=labels)
            family.add_metric(me, value)
            return family

        yield gauge("gridrun_worker_slots", "Tasks this worker runs at once.", agent.config.slots)
        yield gauge("gridrun_worker_running", "Tasks running now.", len(agent.executions))
        yield gauge(
            "gridrun_worker_connected", "1 while the stream to the master is up.",
            1 if agent.connected.is_set() else 0,
        )  # fmt: skip
        yield gauge(
            "gridrun_worker_unacked_results",
            "Results kept on disk until the master acknowledges them.",
            len(agent.unacked),
        )
        ended = CounterMetricFamily(
            "gridrun_worker_attempts_ended", "Attempts ended, by outcome.",
            labels=["worker_id", "outcome"],
        )  # fmt: skip
        counts = dict(agent.ended_by_outcome)  # a copy: the agent's loop may add meanwhile
        for outcome in Outcome:
            ended.add_metric([agent.id, str(outcome)], counts.get(outcome, 0))
        yield ended
        dropped = CounterMetricFamily(
            "gridrun_worker_output_dropped_bytes",
            "Output not sent because the master was away or slow.",
            labels=labels,
        )
        dropped.add_metric(me, agent.dropped_output)
        yield dropped


def serve(agent: Agent, address: str) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics on host:port in a thread; the caller shuts it down."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--metrics must be host:port, not {address!r}")
    registry = CollectorRegistry()
    registry.register(AgentCollector(agent))
    try:
        return start_http_server(int(port), host.strip("[]") or "127.0.0.1", registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {address}: {exc.strerror}") from None
