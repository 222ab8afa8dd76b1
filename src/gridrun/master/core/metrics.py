"""Prometheus metrics of one master (prometheus-client, a registry of its own per master).

Counters and histograms are fed by the service as things happen; gauges that the store knows
better (tasks per state, workers per state) are refreshed when /metrics is scraped.
"""

from __future__ import annotations

from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gridrun.master.core.history import History
from gridrun.model import Task, TaskState, Usage, WorkerState
from gridrun.store import Storage

# seconds: from a few milliseconds (an idle grid) to hours (a batch job)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
CPU_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
MEMORY_BUCKETS = tuple(float(1 << n) for n in range(20, 39, 2))  # 1 MiB .. 256 GiB
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


RECENT_S = 600  # finishes per second are kept this long, for the dashboard's sparkline


class Metrics:
    def __init__(self, history_step_s: float = 5.0) -> None:
        self.history = History(LATENCY_BUCKETS, DURATION_BUCKETS, history_step_s)
        self._recent: deque[list[int]] = deque()  # [epoch second, tasks finished in it]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.submitted = Counter(
            "gridrun_tasks_submitted",
            "Tasks accepted (idempotent repeats not counted).",
            registry=r,
        )
        self.slots_skipped_total = 0  # (the counter's value, for the API)
        self.slots_skipped = Counter(
            "gridrun_schedule_slots_skipped",
            "Schedule slots passed over while no master fired them (a schedule catches up once).",
            registry=r,
        )
        self.slots_over_quota = Counter(
            "gridrun_schedule_slots_over_quota",
            "Schedule slots that made no task: the schedule's owner or queue was at its quota"
            " of queued tasks (or the grid at --max-queued).",
            registry=r,
        )
        self.output_expired = Counter(
            "gridrun_output_expired_bytes",
            "Output bytes dropped to keep the grid within --output-budget.",
            registry=r,
        )
        self.collected = Counter(
            "gridrun_tasks_collected",
            "Ended tasks deleted by retention (--retain, --retain-failed, gridrun gc).",
            registry=r,
        )
        self.finished = Counter(
            "gridrun_tasks_finished", "Tasks that reached a terminal state.", ["state"], registry=r
        )
        self.alloc_submitted = Counter(
            "gridrun_allocations_submitted",
            "Allocations submitted to a cluster's scheduler, by queue.",
            ["queue"],
            registry=r,
        )
        self.alloc_failures = Counter(
            "gridrun_allocation_failures",
            "Allocations refused, failed, or whose workers never joined, by queue.",
            ["queue"],
            registry=r,
        )
        self.alloc_paused = Gauge(
            "gridrun_allocation_queue_paused",
            "1 while an allocation queue is paused (by a user, or after failures).",
            ["queue"],
            registry=r,
        )
        self.tasks = Gauge("gridrun_tasks", "Tasks per state, now.", ["state"], registry=r)
        self.queue_depth = Gauge("gridrun_queue_depth", "Tasks waiting to be placed.", registry=r)
        self.running = Gauge(
            "gridrun_tasks_running", "Tasks assigned to or running on a worker.", registry=r
        )
        self.workers = Gauge("gridrun_workers", "Workers per state.", ["state"], registry=r)
        self.streams = Gauge("gridrun_worker_streams", "Open worker gRPC streams.", registry=r)
        self.db_bytes = Gauge("gridrun_db_bytes", "The database's size.", registry=r)
        self.output_bytes = Gauge("gridrun_output_bytes", "Tasks' output kept.", registry=r)
        self.tasks_kept = Gauge("gridrun_tasks_kept", "Tasks in the database.", registry=r)
        self.oldest_task = Gauge(
            "gridrun_oldest_task_age_seconds", "Age of the oldest task kept.", registry=r
        )
        self.disk_used = Gauge(
            "gridrun_db_disk_used_ratio", "How full the disk holding the database is.", registry=r
        )
        self.next_retention = Gauge(
            "gridrun_next_retention_seconds", "Seconds until the next retention pass.", registry=r
        )
        self.dispatch_latency = Histogram(
            "gridrun_dispatch_latency_seconds",
            "From submission to the start of the attempt that ended the task.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.run_duration = Histogram(
            "gridrun_run_duration_seconds",
            "How long the final attempt ran.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.task_cpu = Histogram(
            "gridrun_task_cpu_seconds",
            "CPU time (user + system) of each ended attempt, where its worker measured it.",
            buckets=CPU_BUCKETS,
            registry=r,
        )
        self.task_memory = Histogram(
            "gridrun_task_peak_memory_bytes",
            "Peak memory of each ended attempt, where its worker measured it.",
            buckets=MEMORY_BUCKETS,
            registry=r,
        )
        self.stale_reports = Counter(
            "gridrun_stale_reports_dropped",
            "Worker reports for attempts the worker does not hold (fencing).",
            registry=r,
        )
        self._stale_reports = 0
        for state in TaskState:  # every series exists from the start, at zero
            self.tasks.labels(state=str(state))
        for wstate in WorkerState:
            self.workers.labels(state=str(wstate))

    def used(self, usage: Usage) -> None:
        """An attempt ended, having used this."""
        if usage.cpu_s is not None:
            self.task_cpu.observe(usage.cpu_s)
        if usage.peak_memory_bytes is not None:
            self.task_memory.observe(usage.peak_memory_bytes)

    def stale_report(self) -> None:
        self.stale_reports.inc()
        self._stale_reports += 1

    def stale_reports_dropped(self) -> int:
        """Kept beside the counter: reading it back from the registry collected every metric,
        on each GET /v1/stats."""
        return self._stale_reports

    def settled(self, task: Task, now_ms: int) -> None:
        """A task just reached its terminal state."""
        self.finished.labels(state=str(task.state)).inc()
        self.history.settled(task)
        second = now_ms // 1000
        if self._recent and self._recent[-1][0] == second:
            self._recent[-1][1] += 1
        else:
            self._recent.append([second, 1])
        while self._recent and self._recent[0][0] <= second - RECENT_S:
            self._recent.popleft()
        if task.started_at is not None:
            self.dispatch_latency.observe(max(0, task.started_at - task.created_at) / 1000)
            if task.finished_at is not None:
                self.run_duration.observe(max(0, task.finished_at - task.started_at) / 1000)

    def throughput(self, now_ms: int, buckets: int, bucket_s: int) -> list[int]:
        """Tasks finished per bucket over the last buckets x bucket_s seconds, oldest first."""
        counts = [0] * buckets
        end = now_ms // 1000 + 1
        for second, n in self._recent:
            index = buckets - 1 - (end - 1 - second) // bucket_s
            if 0 <= index < buckets:
                counts[index] += n
        return counts

    def storage(self, storage: Storage, now_ms: int, next_retention_s: float | None) -> None:
        """Set the storage gauges (before `refresh` renders them)."""
        if storage.db_bytes is not None:
            self.db_bytes.set(storage.db_bytes)
        self.output_bytes.set(storage.output_bytes)
        if storage.oldest_task_ms is not None:
            self.oldest_task.set(max(0, now_ms - storage.oldest_task_ms) / 1000)
        if storage.disk_used is not None:
            self.disk_used.set(storage.disk_used)
        if next_retention_s is not None:
            self.next_retention.set(max(0.0, next_retention_s))

    def refresh(
        self,
        tasks: dict[TaskState, int],
        workers: dict[WorkerState, int],
        streams: int,
    ) -> bytes:
        """Set the gauges from a fresh count and render the exposition text."""
        for state in TaskState:
            self.tasks.labels(state=str(state)).set(tasks.get(state, 0))
        self.queue_depth.set(tasks.get(TaskState.QUEUED, 0))
        self.running.set(tasks.get(TaskState.ASSIGNED, 0) + tasks.get(TaskState.RUNNING, 0))
        for wstate in WorkerState:
            self.workers.labels(state=str(wstate)).set(workers.get(wstate, 0))
        self.streams.set(streams)
        self.tasks_kept.set(sum(tasks.values()))
        return generate_latest(self.registry)
