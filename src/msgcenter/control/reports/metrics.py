"""The report indicators on the control instance's ``/metrics``, so that an alerting system can
page someone when a threshold is crossed (SPEC §4, §3.10).

Three gauges, per execution instance, event type ("" for all types) and
indicator, over the last ``reports.metrics_window_hours``:
``msgcenter_report_indicator`` (the value), ``msgcenter_report_threshold`` (its
warning and alert levels) and ``msgcenter_report_threshold_crossed`` (1 once
the value is at or above the level). They are read from the aggregates at
most every ``reports.metrics_cache_seconds``: a scrape costs a few indexed
sums, and nothing between two reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from msgcenter.control.reports.service import IndicatorValue, ReportsService
from msgcenter.errors import MsgcenterError
from msgcenter.reports import Level

log = structlog.get_logger(__name__)
LABELS = ["instance", "event_type", "indicator"]


class ReportCollector(Collector):
    """Report indicators and their thresholds, from :meth:`ReportsService.indicators`."""

    def __init__(self, reports: ReportsService, ttl: float) -> None:
        self._reports = reports
        self._ttl = ttl
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._values: list[IndicatorValue] = []

    def values(self) -> list[IndicatorValue]:
        """The indicators, read again once the cached ones are older than the TTL (the last
        ones kept, and the error logged, when the database fails)."""
        with self._lock:
            if time.monotonic() - self._read_at >= self._ttl:
                try:
                    self._values = self._reports.indicators()
                except MsgcenterError as exc:
                    log.warning(
                        "report indicators unreadable", action="reports.metrics", detail=exc.detail
                    )
                self._read_at = time.monotonic()
            return self._values

    def collect(self) -> Iterator[GaugeMetricFamily]:
        values = GaugeMetricFamily(
            "msgcenter_report_indicator",
            "A report indicator over the last hours (msgcenter reports): rates as fractions, "
            "times in seconds, queue sizes in events",
            labels=LABELS,
        )
        thresholds = GaugeMetricFamily(
            "msgcenter_report_threshold",
            "The warning and alert levels of a report indicator",
            labels=[*LABELS, "level"],
        )
        crossed = GaugeMetricFamily(
            "msgcenter_report_threshold_crossed",
            "1 when a report indicator is at or above its warning or alert level",
            labels=[*LABELS, "level"],
        )
        for found in self.values():
            check = found.check
            if check.value is None:
                continue
            labels = [found.instance, found.event_type, check.indicator]
            values.add_metric(labels, check.value)
            for level, limit in ((Level.WARNING, check.warning), (Level.ALERT, check.alert)):
                if limit is None:
                    continue
                thresholds.add_metric([*labels, level.value], limit)
                crossed.add_metric([*labels, level.value], 1.0 if check.value >= limit else 0.0)
        yield values
        yield thresholds
        yield crossed
