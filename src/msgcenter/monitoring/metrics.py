"""Prometheus metrics of an instance, and their exposition.

With several web workers, set ``PROMETHEUS_MULTIPROC_DIR`` (``msgcenter exec serve
--workers N`` does it) so that a scrape of any worker reports all of them.
"""

from __future__ import annotations

import functools
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

#: the ``type`` label of events whose type has no publication in force (a client's
#: made-up types would otherwise grow the metrics without bound)
UNPUBLISHED_TYPE = "(unpublished)"
EVENTS_RECEIVED = Counter(
    "msgcenter_events_received",
    "Events accepted and committed at intake, by queue and published type",
    ["queue", "type"],
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

STORE_AVAILABLE = Gauge(
    "msgcenter_store_available",
    "0 while a worker finds the database unavailable (from the first failure to the probe that "
    "succeeds), else 1",
    multiprocess_mode="livemin",
)
STORE_OUTAGES = Counter(
    "msgcenter_store_outages",
    "Database outages a worker went through (each logged once: store.unavailable)",
)
RELAY_AVAILABLE = Gauge(
    "msgcenter_relay_available",
    "0 while a channel's relay cannot be reached (sessions fail), else 1",
    ["channel"],
    multiprocess_mode="livemin",
)
RELAY_FAILURES = Counter(
    "msgcenter_relay_failures",
    "Attempts and probes that could not reach a channel's relay",
    ["channel"],
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

BOUNCE_REPORTS = Counter(
    "msgcenter_bounce_reports",
    "Mail received at bounce addresses, by what it was read as "
    "(hard, soft, complaint, unknown, malformed)",
    ["kind"],
)
BOUNCE_REFUSED = Counter(
    "msgcenter_bounce_recipients_refused",
    "Recipients refused by the bounce receiver: no bounce address of this instance "
    "(forged, altered or foreign)",
)

SMPP_ERRORS = Counter(
    "msgcenter_smpp_errors",
    "submit_sm answered with an error by the SMSC, by command_status name",
    ["status"],
)
SMS_PARTS = Counter(
    "msgcenter_sms_parts",
    "SMS parts (short messages) accepted by the SMSC: a long text counts one per part",
)
SMS_RECEIPTS = Counter(
    "msgcenter_sms_receipts",
    "SMSC delivery receipts by what became of them (delivered, failed, unknown: no delivery "
    "log has the message id, part: a later part of a long message, intermediate, malformed)",
    ["result"],
)


def record_outcome(channel: str, outcome: str, event_created: datetime) -> None:
    """Account one attempt (called by the dispatcher)."""
    MESSAGES.labels(channel=channel, outcome=outcome).inc()
    if outcome == "sent":
        PROCESSING_LATENCY.labels(channel=channel).observe(
            (datetime.now(UTC) - event_created).total_seconds()
        )


def record_intake_request(api: str, outcome: str, seconds: float) -> None:
    """Account one intake call (REST push or SOAP call) with its outcome and duration."""
    requests, latency = _intake_children(api, outcome)
    requests.inc()
    latency.observe(seconds)


@functools.cache
def _intake_children(api: str, outcome: str) -> tuple[Counter, Histogram]:
    """The labelled children of one API and outcome, looked up once per process (a
    ``labels()`` call checks and hashes its labels on every request)."""
    return INTAKE_REQUESTS.labels(api=api, outcome=outcome), INTAKE_LATENCY.labels(api=api)


def record_group_commit(events: int, seconds: float) -> None:
    """Account one committed group (called by the group committer)."""
    GROUP_COMMIT_EVENTS.observe(events)
    GROUP_COMMIT_SECONDS.observe(seconds)


class QueueSizeCollector(Collector):
    """Reports ``msgcenter_queue_events{queue,status="pending"}`` and
    ``msgcenter_queue_messages{queue}`` from the statsSampler's newest samples (every
    ``processing.stats_interval_seconds``), read at most every ``ttl`` seconds."""

    def __init__(self, read_sizes: Callable[[], dict[str, tuple[int, int]]], ttl: float = 5.0):
        self._read_sizes = read_sizes
        self._ttl = ttl
        self._cached: tuple[float, dict[str, tuple[int, int]]] = (float("-inf"), {})

    def collect(self) -> Iterator[GaugeMetricFamily]:
        at, sizes = self._cached
        if time.monotonic() - at > self._ttl:
            sizes = self._read_sizes()
            self._cached = (time.monotonic(), sizes)
        events = GaugeMetricFamily(
            "msgcenter_queue_events",
            "Events waiting in the queues (newest statsSampler sample)",
            labels=["queue", "status"],
        )
        messages = GaugeMetricFamily(
            "msgcenter_queue_messages",
            "Messages waiting to be sent, by queue (newest statsSampler sample)",
            labels=["queue"],
        )
        for queue_name, (pending_events, pending_messages) in sorted(sizes.items()):
            events.add_metric([queue_name, EventStatus.PENDING.label], pending_events)
            messages.add_metric([queue_name], pending_messages)
        yield events
        yield messages


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
