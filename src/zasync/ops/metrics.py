"""Prometheus metrics: what the database holds, and what this worker process did.

Two sources, each a ``prometheus_client`` collector:

* :class:`DatabaseCollector` reads the database at scrape time (one
  connection, one transaction): jobs by queue and state, quota use,
  dispatcher liveness and seconds since their last ping.  The dashboard's
  ``/metrics`` serves it; any process with the database can.
* :class:`WorkerMetrics` counts what one worker process does: jobs completed
  and failed, their durations (histogram), poll durations (histogram), and
  conflict retries.  ``zasync worker --http-port`` serves it (with the
  database collector) on ``/metrics``.

Metric names start with ``zasync_``.  The list is in the docs (reference, metrics).
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from zasync import _counters
from zasync.model.tx import fresh_connection
from zasync.ops import queries
from zasync.ops.schedules import list_schedules
from zasync.runtime.records import JobId, PollInfo, Records

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class DatabaseCollector(Collector):
    """Gauges read from the database at each scrape."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        """Read queues and dispatchers in one fresh transaction."""
        jobs = GaugeMetricFamily(
            "zasync_jobs",
            "Jobs by queue and state (finished jobs: those kept in completed collections)",
            labels=["queue", "state"],
        )
        quota_size = GaugeMetricFamily("zasync_quota_size", "Quota size", labels=["queue", "quota"])
        quota_used = GaugeMetricFamily(
            "zasync_quota_used", "Jobs holding a quota slot", labels=["queue", "quota"]
        )
        paused = GaugeMetricFamily(
            "zasync_queue_paused",
            "1 while the queue is paused (nothing claimed), else 0",
            labels=["queue"],
        )
        up = GaugeMetricFamily(
            "zasync_dispatcher_up",
            "1 if the dispatcher is active and has pinged in time, else 0",
            labels=["queue", "uuid"],
        )
        ping_age = GaugeMetricFamily(
            "zasync_dispatcher_seconds_since_ping",
            "Seconds since the dispatcher's last ping",
            labels=["queue", "uuid"],
        )
        next_run = GaugeMetricFamily(
            "zasync_schedule_next_run_timestamp_seconds",
            "When the schedule's next tick fires (Unix time); not given while it is paused",
            labels=["queue", "schedule"],
        )
        runs = CounterMetricFamily(
            "zasync_schedule_runs", "Jobs the schedule has put", labels=["queue", "schedule"]
        )
        with fresh_connection(self.db) as (conn, _tm):
            try:
                for schedule in list_schedules(conn):
                    labels = [schedule["queue"], schedule["name"]]
                    runs.add_metric(labels, schedule["runs"])
                    if not schedule["paused"]:
                        when = datetime.datetime.fromisoformat(schedule["next_run"])
                        next_run.add_metric(labels, when.timestamp())
                for queue in queries.queues(conn):
                    paused.add_metric([queue["name"]], 1 if queue["paused"] else 0)
                    for state, number in queue["counts"].items():
                        jobs.add_metric([queue["name"], state], number)
                    for quota in queue["quotas"]:
                        quota_size.add_metric([queue["name"], quota["name"]], quota["size"])
                        quota_used.add_metric([queue["name"], quota["name"]], quota["used"])
                for d in queries.dispatchers(conn):
                    up.add_metric([d["queue"], d["uuid"]], 1 if d["state"] == "alive" else 0)
                    if d["seconds_since_ping"] is not None:
                        ping_age.add_metric([d["queue"], d["uuid"]], d["seconds_since_ping"])
            except LookupError:
                pass  # no queues installed yet: nothing to report
        yield from (jobs, quota_size, quota_used, paused, up, ping_age, next_run, runs)


class RetriesCollector(Collector):
    """Conflict and other retries counted in this process (see ``zasync._counters``)."""

    def collect(self) -> Iterator[Metric]:
        """The counters as they are now."""
        retries = CounterMetricFamily(
            "zasync_retries",
            "Retries in this process: conflict_retries (reason: job, bookkeeping), "
            "conflicts_on (reason: the class in conflict), "
            "job_retries (reason: transaction_error, disconnected)",
            labels=["kind", "reason"],
        )
        for (name, label), value in sorted(_counters.snapshot().items()):
            retries.add_metric([name, label], value)
        yield retries


class WorkerMetrics:
    """Counters and histograms of one worker process, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.completed = Counter(
            "zasync_worker_jobs_completed",
            "Jobs this worker finished, by queue and outcome (succeeded, failed, timed_out: "
            "stopped at its time limit)",
            ["queue", "outcome"],
            registry=self.registry,
        )
        self.durations = Histogram(
            "zasync_worker_job_duration_seconds",
            "Time from a job's start to its result, in this worker",
            ["queue"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.polls = Histogram(
            "zasync_worker_poll_duration_seconds",
            "How long one poll (claim, file, ping in every queue) took",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(RetriesCollector())

    def records(self, polls_size: int = 400, jobs_size: int = 1000) -> MeteredRecords:
        """A dispatcher's records that also feed these metrics."""
        return MeteredRecords(self, polls_size, jobs_size)

    def add_database(self, db: Any) -> None:
        """Also export the database gauges from this registry."""
        self.registry.register(DatabaseCollector(db))

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return bytes(generate_latest(self.registry))


class MeteredRecords(Records):
    """Records that count finished jobs and time polls on the way through."""

    def __init__(self, metrics: WorkerMetrics, polls_size: int, jobs_size: int) -> None:
        super().__init__(polls_size, jobs_size)
        self._metrics = metrics
        self._queue_of: dict[JobId, str] = {}
        self._queue_lock = threading.Lock()
        self._poll_started = time.monotonic()

    def add_poll(self, info: PollInfo, started: list[JobId]) -> None:
        """Remember which queue each claimed job came from; time the poll."""
        now = time.monotonic()
        self._metrics.polls.observe(max(0.0, now - self._poll_started))
        with self._queue_lock:
            for queue_name, agents in info.items():
                for details in (agents or {}).values():
                    for job_id in details.get("new jobs", ()):
                        self._queue_of[job_id] = queue_name
        super().add_poll(info, started)

    def mark_poll_start(self) -> None:
        """Called when a poll begins (its duration ends at ``add_poll``)."""
        self._poll_started = time.monotonic()

    def update_job(self, job_id: JobId, **values: Any) -> None:
        """Count a job when its record gets its completion time."""
        super().update_job(job_id, **values)
        completed = values.get("completed")
        if completed is None or values.get("reassigned") or values.get("waiting"):
            return
        with self._queue_lock:
            queue = self._queue_of.pop(job_id, "")
        try:
            record = self.job_info(*job_id)
        except (KeyError, ValueError):
            record = {}
        outcome = (
            "timed_out"
            if values.get("timed_out")
            else "failed"
            if values.get("failed")
            else "succeeded"
        )
        self._metrics.completed.labels(queue, outcome).inc()
        started = record.get("started")
        if isinstance(started, datetime.datetime) and isinstance(completed, datetime.datetime):
            self._metrics.durations.labels(queue).observe(
                max(0.0, (completed - started).total_seconds())
            )


def database_exposition(db: Any) -> bytes:
    """The database gauges and this process's retry counters, in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(DatabaseCollector(db))
    registry.register(RetriesCollector())
    return bytes(generate_latest(registry))
