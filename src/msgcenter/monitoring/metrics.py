"""Prometheus metrics of an instance, and their exposition.

With several web workers, set ``PROMETHEUS_MULTIPROC_DIR`` (``msgcenter exec serve
--workers N`` does it) so that a scrape of any worker reports all of them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from msgcenter.events.model import EventStatus

EVENTS_RECEIVED = Counter(
    "msgcenter_events_received", "Events accepted and committed at intake", ["queue", "type"]
)
INTAKE_REQUESTS = Counter(
    "msgcenter_intake_requests", "Intake API calls by API and outcome", ["api", "outcome"]
)
INTAKE_LATENCY = Histogram(
    "msgcenter_intake_request_seconds",
    "Time to answer an intake call (parse, validate, commit)",
    ["api"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
GROUP_COMMIT_EVENTS = Histogram(
    "msgcenter_group_commit_events",
    "Events stored per group-commit transaction",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
GROUP_COMMIT_SECONDS = Histogram(
    "msgcenter_group_commit_seconds",
    "Duration of one group-commit transaction",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)


WAKEUP_LISTENING = Gauge(
    "msgcenter_wakeup_listening",
    "1 while the processing workflows are woken by PostgreSQL notifications, 0 while they poll",
    multiprocess_mode="livemax",
)
WAKEUP_FALLBACKS = Counter(
    "msgcenter_wakeup_fallbacks",
    "Times the notification connection was lost and the workflows fell back to polling",
)

MESSAGES = Counter(
    "msgcenter_messages",
    "Send attempts by channel and resulting delivery-log status",
    ["channel", "outcome"],
)
PROCESSING_LATENCY = Histogram(
    "msgcenter_processing_latency_seconds",
    "From event intake to a successful send",
    ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)


def record_outcome(channel: str, outcome: str, event_created: datetime) -> None:
    """Account one attempt (called by the dispatcher)."""
    MESSAGES.labels(channel=channel, outcome=outcome).inc()
    if outcome == "sent":
        PROCESSING_LATENCY.labels(channel=channel).observe(
            (datetime.now(UTC) - event_created).total_seconds()
        )


def record_group_commit(events: int, seconds: float) -> None:
    """Account one committed group (called by the group committer)."""
    GROUP_COMMIT_EVENTS.observe(events)
    GROUP_COMMIT_SECONDS.observe(seconds)


class QueueSizeCollector(Collector):
    """Reports ``msgcenter_queue_events{queue,status}`` from the database, cached briefly."""

    def __init__(self, read_sizes: Callable[[], dict[tuple[str, int], int]], ttl: float = 5.0):
        self._read_sizes = read_sizes
        self._ttl = ttl
        self._cached: tuple[float, dict[tuple[str, int], int]] = (0.0, {})

    def collect(self) -> Iterator[GaugeMetricFamily]:
        at, sizes = self._cached
        if time.monotonic() - at > self._ttl:
            sizes = self._read_sizes()
            self._cached = (time.monotonic(), sizes)
        family = GaugeMetricFamily(
            "msgcenter_queue_events", "Events in the queues by status", labels=["queue", "status"]
        )
        for (queue_name, status), count in sorted(sizes.items()):
            family.add_metric([queue_name, EventStatus(status).label], count)
        yield family


def exposition(extra: list[Collector]) -> tuple[bytes, str]:
    """The metrics page (body, content type): this process, or all workers in multiprocess mode."""
    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call] # untyped in prometheus_client
    body = generate_latest(registry)
    if extra:
        side = CollectorRegistry()
        for collector in extra:
            side.register(collector)
        body += generate_latest(side)
    return body, CONTENT_TYPE_LATEST
