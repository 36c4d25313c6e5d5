"""Reports of the control instance (SPEC §4): what they hold, and the pure computations behind them.

Three reports, each over a period, for one execution instance or all, one
channel or all:

- **service level**: incoming events and successful messages per period, the
  average sending time, and the error rate with its breakdown (not taken into
  account, expired, delivery failed, ignored);
- **processing time**: queuing, sending and total time (average, and p50, p95,
  p99 estimated from a histogram), overall and per event type, and the queue
  sizes (minimum, average, maximum);
- **event history**: a pivot of events and sent messages by event type and period.

They are read from hourly aggregates that the archiving run maintains as it
imports pages (``store/reports.py``), never from the archived rows. Times go
into a fixed log-scale histogram (:data:`BUCKET_BOUNDS`), from which
:func:`percentile` estimates p50/p95/p99 to within one bucket (a factor of
10^(1/5), about 1.58). Warning and alert thresholds (:class:`Thresholds`) mark
the indicators that crossed them. Everything here is pure: no I/O.
"""

from __future__ import annotations

import csv
import enum
import io
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from msgcenter.errors import InvalidInputError

# -- the time histogram --------------------------------------------------------------------

#: buckets per decade of the time histogram
BUCKETS_PER_DECADE = 5
#: lower bounds (seconds) of the histogram's buckets after the first: 1 ms to 10^5 s (27.8 h),
#: five per decade. Bucket 0 holds [0, 1 ms), bucket i holds [BOUNDS[i-1], BOUNDS[i]), the last
#: one [10^5 s, ∞) — the numbering of PostgreSQL's ``width_bucket(x, BOUNDS)``.
BUCKET_BOUNDS: tuple[float, ...] = tuple(10 ** (-3 + i / BUCKETS_PER_DECADE) for i in range(41))
#: how many buckets a histogram has
BUCKETS = len(BUCKET_BOUNDS) + 1
#: the measured times: event created → delivery log created (queuing), delivery log created →
#: sent (sending), event created → sent (total)
MEASURES = ("queue", "sending", "total")


def bucket_of(seconds: float) -> int:
    """The histogram bucket of a time (negative times, from clock skew, count as 0)."""
    return bisect_right(BUCKET_BOUNDS, max(seconds, 0.0))


def bucket_range(bucket: int) -> tuple[float, float]:
    """The [low, high) seconds of a bucket (``inf`` for the last one)."""
    low = 0.0 if bucket == 0 else BUCKET_BOUNDS[bucket - 1]
    high = BUCKET_BOUNDS[bucket] if bucket < len(BUCKET_BOUNDS) else float("inf")
    return low, high


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0 < q ≤ 1) of the times counted in a histogram, or None if empty.

    The bucket holding the rank ``q × n`` is found, and the value interpolated inside
    it geometrically (the buckets are log-scale), linearly in the first bucket; in the
    last, open bucket the estimate is its lower bound.
    """
    total = sum(c for c in counts if c > 0)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for bucket, count in enumerate(counts):
        if count <= 0:
            continue
        if seen + count >= rank:
            low, high = bucket_range(bucket)
            fraction = min(max((rank - seen) / count, 0.0), 1.0)
            if bucket == 0:
                return high * fraction
            if high == float("inf"):
                return low
            return float(low * (high / low) ** fraction)
        seen += count
    return bucket_range(len(counts) - 1)[0]  # pragma: no cover - rank ≤ total always stops above


# -- thresholds ----------------------------------------------------------------------------


class Level(enum.StrEnum):
    """Where an indicator stands against its thresholds."""

    OK = "ok"
    WARNING = "warning"
    ALERT = "alert"


#: the indicators that thresholds watch; each is worse the higher it is
INDICATORS = (
    "error_rate",
    "average_queue_seconds",
    "average_sending_seconds",
    "average_total_seconds",
    "p95_total_seconds",
    "p99_total_seconds",
    "max_queue_size",
)
#: the indicators of the service-level report (the others are processing time's)
SERVICE_LEVEL_INDICATORS = ("error_rate", "average_sending_seconds")
#: indicators measured per event type (queue sizes are the instance's)
PER_TYPE_INDICATORS = tuple(i for i in INDICATORS if i != "max_queue_size")


@dataclass(frozen=True, slots=True)
class Threshold:
    """The warning and alert levels of one indicator (None: not watched)."""

    warning: float | None = None
    alert: float | None = None

    def level(self, value: float | None) -> Level:
        """The level ``value`` reaches: alert at or above ``alert``, warning at or above ``warning``."""
        if value is None:
            return Level.OK
        if self.alert is not None and value >= self.alert:
            return Level.ALERT
        if self.warning is not None and value >= self.warning:
            return Level.WARNING
        return Level.OK


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Thresholds per indicator, with overrides per event type."""

    defaults: Mapping[str, Threshold] = field(default_factory=dict)
    per_type: Mapping[str, Mapping[str, Threshold]] = field(default_factory=dict)

    def of(self, indicator: str, event_type: str | None = None) -> Threshold:
        """The threshold of ``indicator`` for ``event_type`` (its override, else the default)."""
        if event_type is not None:
            override = self.per_type.get(event_type, {}).get(indicator)
            if override is not None:
                return override
        return self.defaults.get(indicator, Threshold())

    def check(self, indicator: str, value: float | None, event_type: str | None = None) -> Check:
        """``value`` of ``indicator`` with its thresholds and the level it reaches."""
        threshold = self.of(indicator, event_type)
        return Check(
            indicator=indicator,
            event_type=event_type,
            value=value,
            warning=threshold.warning,
            alert=threshold.alert,
            level=threshold.level(value),
        )


@dataclass(frozen=True, slots=True)
class Check:
    """One indicator's value, its thresholds and the level it reaches."""

    indicator: str
    #: the event type it was measured on (None: every type of the report)
    event_type: str | None
    value: float | None
    warning: float | None
    alert: float | None
    level: Level


def crossed(checks: Iterable[Check]) -> list[Check]:
    """The checks at warning or alert, alerts first."""
    found = [c for c in checks if c.level is not Level.OK]
    return sorted(
        found, key=lambda c: (c.level is not Level.ALERT, c.event_type or "", c.indicator)
    )


# -- periods ---------------------------------------------------------------------------------


class Granularity(enum.StrEnum):
    """How a report's period is divided (days, weeks and months begin at 00:00 UTC; weeks on Monday)."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class ReportName(enum.StrEnum):
    """The reports."""

    SERVICE_LEVEL = "service-level"
    PROCESSING_TIME = "processing-time"
    EVENT_HISTORY = "event-history"


#: most periods one report may divide into (an hourly report of more than a year is refused)
MAX_PERIODS = 10_000


def period_start(moment: datetime, granularity: Granularity) -> datetime:
    """The start of the period of ``granularity`` that holds ``moment`` (UTC)."""
    hour = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if granularity is Granularity.HOUR:
        return hour
    day = hour.replace(hour=0)
    if granularity is Granularity.DAY:
        return day
    if granularity is Granularity.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_period(start: datetime, granularity: Granularity) -> datetime:
    """The start of the period after the one starting at ``start``."""
    if granularity is Granularity.HOUR:
        return start + timedelta(hours=1)
    if granularity is Granularity.DAY:
        return start + timedelta(days=1)
    if granularity is Granularity.WEEK:
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


@dataclass(frozen=True, slots=True)
class Period:
    """The hours a report covers: those beginning in [``start``, ``end``), cut by ``granularity``."""

    start: datetime
    end: datetime
    granularity: Granularity

    @classmethod
    def of(
        cls,
        start: datetime | None,
        end: datetime | None,
        granularity: Granularity,
        *,
        now: datetime,
        default: timedelta,
    ) -> Period:
        """The period from the caller's bounds (naive times are UTC; ``end`` defaults to
        ``now``, ``start`` to ``default`` before ``end``); :class:`InvalidInputError` names
        what is wrong. ``start`` is rounded down to its hour."""
        end = _utc(end) if end is not None else now
        start = _utc(start) if start is not None else end - default
        if start >= end:
            raise InvalidInputError(
                "invalid report period",
                detail=f"from ({start.isoformat()}) must be before to ({end.isoformat()})",
            )
        start = start.replace(minute=0, second=0, microsecond=0)
        period = cls(start, end, granularity)
        count = len(period.starts(limit=MAX_PERIODS + 1))
        if count > MAX_PERIODS:
            raise InvalidInputError(
                "report period too long",
                detail=f"more than {MAX_PERIODS} periods of one {granularity.value}: "
                "choose a shorter period or a coarser granularity",
            )
        return period

    def starts(self, *, limit: int | None = None) -> list[datetime]:
        """The start of each period of ``granularity`` that holds an hour of the report."""
        found: list[datetime] = []
        at = period_start(self.start, self.granularity)
        while at < self.end and (limit is None or len(found) < limit):
            found.append(at)
            at = next_period(at, self.granularity)
        return found


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- figures ---------------------------------------------------------------------------------

#: the event statuses counted, as aggregate columns (sent, then the errors of the breakdown)
ERROR_KINDS = ("not_taken_into_account", "expired", "delivery_failed", "ignored")


@dataclass(frozen=True, slots=True)
class ServiceFigures:
    """The service level of a set of events (a period, an event type, or all)."""

    events: int
    sent: int
    not_taken_into_account: int
    expired: int
    delivery_failed: int
    ignored: int
    #: every event not sent: the sum of the breakdown
    errors: int
    #: errors / events (None without events)
    error_rate: float | None
    #: from the delivery log's creation to its sending, over sent messages
    average_sending_seconds: float | None

    @classmethod
    def of(cls, sums: Mapping[str, int]) -> ServiceFigures:
        """Figures from aggregate sums (``events``, ``sent``, the error kinds, ``sending_count``,
        ``sending_ms``)."""
        events = int(sums.get("events") or 0)
        errors = sum(int(sums.get(k) or 0) for k in ERROR_KINDS)
        return cls(
            events=events,
            sent=int(sums.get("sent") or 0),
            not_taken_into_account=int(sums.get("not_taken_into_account") or 0),
            expired=int(sums.get("expired") or 0),
            delivery_failed=int(sums.get("delivery_failed") or 0),
            ignored=int(sums.get("ignored") or 0),
            errors=errors,
            error_rate=round(errors / events, 6) if events else None,
            average_sending_seconds=_average(sums.get("sending_ms"), sums.get("sending_count")),
        )


@dataclass(frozen=True, slots=True)
class TimeFigures:
    """One measured time over a set of events: how many, average, estimated percentiles."""

    count: int
    average_seconds: float | None
    p50_seconds: float | None
    p95_seconds: float | None
    p99_seconds: float | None

    @classmethod
    def of(cls, count: int, total_ms: int, buckets: Sequence[int]) -> TimeFigures:
        """Figures from a count, a sum of milliseconds and a histogram."""

        def estimate(q: float) -> float | None:
            found = percentile(buckets, q)
            return None if found is None else round(found, 6)

        return cls(
            count=int(count),
            average_seconds=_average(total_ms, count),
            p50_seconds=estimate(0.50),
            p95_seconds=estimate(0.95),
            p99_seconds=estimate(0.99),
        )


@dataclass(frozen=True, slots=True)
class ProcessingFigures:
    """Queuing, sending and total time of a set of events."""

    queue: TimeFigures
    sending: TimeFigures
    total: TimeFigures

    @classmethod
    def of(cls, sums: Mapping[str, int]) -> ProcessingFigures:
        """Figures from aggregate sums: ``<measure>_count``, ``<measure>_ms`` and the buckets
        ``<measure>_bNN`` (see :func:`bucket_column`); total time counts the sent messages."""
        measures = {}
        for measure in MEASURES:
            counted = "sending_count" if measure == "total" else f"{measure}_count"
            measures[measure] = TimeFigures.of(
                int(sums.get(counted) or 0),
                int(sums.get(f"{measure}_ms") or 0),
                [int(sums.get(column) or 0) for column in BUCKET_COLUMNS[measure]],
            )
        return cls(**measures)

    def indicators(self) -> dict[str, float | None]:
        """The values of the processing-time indicators."""
        return {
            "average_queue_seconds": self.queue.average_seconds,
            "average_sending_seconds": self.sending.average_seconds,
            "average_total_seconds": self.total.average_seconds,
            "p95_total_seconds": self.total.p95_seconds,
            "p99_total_seconds": self.total.p99_seconds,
        }


def bucket_column(measure: str, bucket: int) -> str:
    """The aggregate column counting ``measure``'s times in ``bucket``: ``queue_b07``."""
    return f"{measure}_b{bucket:02d}"


#: the histogram's columns of each measure, in bucket order
BUCKET_COLUMNS = {m: tuple(bucket_column(m, b) for b in range(BUCKETS)) for m in MEASURES}


def average_seconds(total_ms: int | None, count: int | None) -> float | None:
    """The average in seconds of ``count`` times summing ``total_ms`` milliseconds."""
    if not count:
        return None
    return round(int(total_ms or 0) / int(count) / 1000, 6)


_average = average_seconds


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """Queue sizes sampled on an execution instance (``statsSampler``) over a period."""

    queue: str
    samples: int
    min_pending_events: int | None
    average_pending_events: float | None
    max_pending_events: int | None
    min_pending_messages: int | None
    average_pending_messages: float | None
    max_pending_messages: int | None

    @classmethod
    def of(cls, queue: str, sums: Mapping[str, int | None]) -> QueueFigures:
        """Figures from sums: ``samples``, and ``pending_events_{sum,min,max}`` and the same of
        ``pending_messages``."""
        samples = int(sums.get("samples") or 0)

        def average(name: str) -> float | None:
            return round(int(sums.get(f"{name}_sum") or 0) / samples, 3) if samples else None

        def bound(name: str) -> int | None:
            value = sums.get(name)
            return None if value is None or not samples else int(value)

        return cls(
            queue=queue,
            samples=samples,
            min_pending_events=bound("pending_events_min"),
            average_pending_events=average("pending_events"),
            max_pending_events=bound("pending_events_max"),
            min_pending_messages=bound("pending_messages_min"),
            average_pending_messages=average("pending_messages"),
            max_pending_messages=bound("pending_messages_max"),
        )


# -- the reports -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """What a report covers."""

    start: datetime
    end: datetime
    granularity: Granularity
    #: the execution instance's name (None: every instance)
    instance: str | None
    #: the channel's name (None: every channel)
    channel: str | None
    #: one event type (None: every type)
    event_type: str | None
    #: the folder the caller is restricted to (None: every folder)
    folder: str | None


@dataclass(frozen=True, slots=True)
class ServicePoint:
    """The service level of one period."""

    period: datetime
    figures: ServiceFigures


@dataclass(frozen=True, slots=True)
class ServiceType:
    """The service level of one event type, with its checks."""

    event_type: str
    figures: ServiceFigures
    checks: list[Check]


@dataclass(frozen=True, slots=True)
class ServiceLevelReport:
    """Incoming events and sent messages per period, error rate and its breakdown, sending time."""

    report: ReportName
    scope: Scope
    totals: ServiceFigures
    checks: list[Check]
    series: list[ServicePoint]
    by_type: list[ServiceType]
    #: the checks at warning or alert, overall and per type
    crossed: list[Check]


@dataclass(frozen=True, slots=True)
class ProcessingPoint:
    """Average times of one period."""

    period: datetime
    average_queue_seconds: float | None
    average_sending_seconds: float | None
    average_total_seconds: float | None


@dataclass(frozen=True, slots=True)
class ProcessingType:
    """The processing time of one event type, with its checks."""

    event_type: str
    figures: ProcessingFigures
    checks: list[Check]


@dataclass(frozen=True, slots=True)
class QueuePoint:
    """Queue sizes of one queue in one period."""

    period: datetime
    figures: QueueFigures


@dataclass(frozen=True, slots=True)
class ProcessingTimeReport:
    """Queuing, sending and total time (averages and percentiles), and queue sizes."""

    report: ReportName
    scope: Scope
    totals: ProcessingFigures
    checks: list[Check]
    by_type: list[ProcessingType]
    series: list[ProcessingPoint]
    #: per queue (rt, batch) over the whole period
    queues: list[QueueFigures]
    queue_series: list[QueuePoint]
    crossed: list[Check]


@dataclass(frozen=True, slots=True)
class HistoryCell:
    """Events and sent messages of one event type in one period."""

    events: int
    sent: int


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One event type across the periods."""

    event_type: str
    cells: list[HistoryCell]
    events: int
    sent: int


@dataclass(frozen=True, slots=True)
class EventHistoryReport:
    """A pivot of events and sent messages: a row per event type, a column per period."""

    report: ReportName
    scope: Scope
    periods: list[datetime]
    rows: list[HistoryRow]
    #: per period, every type
    totals: list[HistoryCell]
    events: int
    sent: int


Report = ServiceLevelReport | ProcessingTimeReport | EventHistoryReport


# -- CSV -------------------------------------------------------------------------------------


def to_csv(report: Report) -> str:
    """The report as CSV (RFC 4180, CRLF line ends): the service level and processing time one
    row per period then one per event type, the history its pivot; a level column follows each
    watched indicator."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if isinstance(report, ServiceLevelReport):
        _service_csv(writer, report)
    elif isinstance(report, ProcessingTimeReport):
        _processing_csv(writer, report)
    else:
        _history_csv(writer, report)
    return out.getvalue()


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _levels(checks: Sequence[Check], indicators: Sequence[str]) -> list[str]:
    by_name = {c.indicator: c.level.value for c in checks}
    return [by_name.get(i, "") for i in indicators]


SERVICE_COLUMNS = (
    "events",
    "sent",
    "errors",
    *ERROR_KINDS,
    "error_rate",
    "average_sending_seconds",
)


def _service_csv(writer: csv._writer, report: ServiceLevelReport) -> None:  # type: ignore[name-defined]
    levels = [f"{i}_level" for i in SERVICE_LEVEL_INDICATORS]
    writer.writerow(["period", "event_type", *SERVICE_COLUMNS, *levels])

    def figures(f: ServiceFigures) -> list[object]:
        return [_cell(getattr(f, c)) for c in SERVICE_COLUMNS]

    for point in report.series:
        writer.writerow([_cell(point.period), "", *figures(point.figures), "", ""])
    for row in report.by_type:
        writer.writerow(
            [
                "total",
                row.event_type,
                *figures(row.figures),
                *_levels(row.checks, SERVICE_LEVEL_INDICATORS),
            ]
        )
    writer.writerow(
        ["total", "", *figures(report.totals), *_levels(report.checks, SERVICE_LEVEL_INDICATORS)]
    )


TIME_COLUMNS = ("count", "average_seconds", "p50_seconds", "p95_seconds", "p99_seconds")
PROCESSING_INDICATORS = tuple(i for i in PER_TYPE_INDICATORS if i != "error_rate")


def _processing_csv(writer: csv._writer, report: ProcessingTimeReport) -> None:  # type: ignore[name-defined]
    measures = [f"{m}_{c}" for m in MEASURES for c in TIME_COLUMNS]
    levels = [f"{i}_level" for i in PROCESSING_INDICATORS]
    writer.writerow(["period", "event_type", *measures, *levels])
    blank = [""] * len(TIME_COLUMNS)
    for point in report.series:
        averages = (
            point.average_queue_seconds,
            point.average_sending_seconds,
            point.average_total_seconds,
        )
        row: list[object] = [_cell(point.period), ""]
        for average in averages:
            row += ["", _cell(average), *blank[2:]]
        writer.writerow([*row, *[""] * len(levels)])

    def times(f: ProcessingFigures) -> list[object]:
        return [_cell(getattr(getattr(f, m), c)) for m in MEASURES for c in TIME_COLUMNS]

    for typed in report.by_type:
        writer.writerow(
            [
                "total",
                typed.event_type,
                *times(typed.figures),
                *_levels(typed.checks, PROCESSING_INDICATORS),
            ]
        )
    writer.writerow(
        ["total", "", *times(report.totals), *_levels(report.checks, PROCESSING_INDICATORS)]
    )


def _history_csv(writer: csv._writer, report: EventHistoryReport) -> None:  # type: ignore[name-defined]
    header: list[object] = ["event_type"]
    for start in report.periods:
        header += [f"{start.isoformat()} events", f"{start.isoformat()} sent"]
    writer.writerow([*header, "total events", "total sent"])
    for row in report.rows:
        cells: list[object] = [row.event_type]
        for cell in row.cells:
            cells += [cell.events, cell.sent]
        writer.writerow([*cells, row.events, row.sent])
    totals: list[object] = ["total"]
    for cell in report.totals:
        totals += [cell.events, cell.sent]
    writer.writerow([*totals, report.events, report.sent])
