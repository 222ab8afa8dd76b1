"""A worker's own Prometheus metrics, on an optional address (`gridrun worker --metrics`).

A listener of the agent's events (`gridrun.worker.events`), as dramatiq's Prometheus middleware
listens to its hooks: slots, running tasks, whether the master stream is up, results waiting
for the master's acknowledgement, attempts ended per outcome, output dropped.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from gridrun.errors import ConfigError
from gridrun.model import Outcome
from gridrun.worker.events import (
    AgentEvent,
    AttemptEnded,
    Connected,
    OutputDropped,
    Running,
    Unacked,
)


class WorkerMetrics:
    """The worker's metrics, in a registry of their own, kept up to date by `on_event`."""

    def __init__(self, worker_id: str, slots: int) -> None:
        self.registry = CollectorRegistry()
        registry, me = self.registry, ["worker_id"]
        self.slots = Gauge(
            "gridrun_worker_slots", "Tasks this worker runs at once.", me, registry=registry
        )
        self.running = Gauge("gridrun_worker_running", "Tasks running now.", me, registry=registry)
        self.connected = Gauge(
            "gridrun_worker_connected",
            "1 while the stream to the master is up.",
            me,
            registry=registry,
        )
        self.unacked = Gauge(
            "gridrun_worker_unacked_results",
            "Results kept on disk until the master acknowledges them.",
            me,
            registry=registry,
        )
        self.dropped = Counter(
            "gridrun_worker_output_dropped_bytes",
            "Output not sent because the master was away or slow.",
            me,
            registry=registry,
        )
        self.ended = Counter(
            "gridrun_worker_attempts_ended",
            "Attempts ended, by outcome.",
            ["worker_id", "outcome"],
            registry=self.registry,
        )
        self._id = worker_id
        self.slots.labels(worker_id).set(slots)
        for gauge in (self.running, self.connected, self.unacked):
            gauge.labels(worker_id).set(0)
        self.dropped.labels(worker_id)
        for outcome in Outcome:
            self.ended.labels(worker_id, str(outcome))

    def on_event(self, event: AgentEvent) -> None:
        me = self._id
        match event:
            case Connected(up=up):
                self.connected.labels(me).set(1 if up else 0)
            case Running(count=count):
                self.running.labels(me).set(count)
            case AttemptEnded(outcome=outcome):
                self.ended.labels(me, str(outcome)).inc()
            case Unacked(count=count):
                self.unacked.labels(me).set(count)
            case OutputDropped(bytes=n):
                self.dropped.labels(me).inc(n)


def serve(metrics: WorkerMetrics, address: str) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics on host:port in a thread; the caller shuts it down."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--metrics must be host:port, not {address!r}")
    try:
        return start_http_server(int(port), host.strip("[]") or "127.0.0.1", metrics.registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {address}: {exc.strerror}") from None
