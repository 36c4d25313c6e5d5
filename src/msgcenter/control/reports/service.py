"""The reports of a control instance (SPEC §4): service level, processing time and event
history, over a period, for one execution instance or all, one channel or all.

Every figure comes from the hourly aggregates the archiving run keeps
(``store/reports.py``), summed by the database over the period's hours: a
30-day report reads 720 rows per key, never the archived events. Reports
count archived events, that is events in a final status: an event still
pending on its execution instance is not in them yet. The thresholds come
from the ``[reports]`` settings; each report marks the indicators that
crossed theirs, and :meth:`ReportsService.indicators` gives the same over the
last hours to ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from msgcenter.errors import ConflictError, InvalidInputError
from msgcenter.events.model import CHANNEL_LABELS, Channel
from msgcenter.operators import Operator, Right
from msgcenter.reports import (
    BUCKETS,
    ERROR_KINDS,
    MEASURES,
    PER_TYPE_INDICATORS,
    PROCESSING_INDICATORS,
    SERVICE_LEVEL_INDICATORS,
    Check,
    EventHistoryReport,
    Granularity,
    HistoryCell,
    HistoryRow,
    Period,
    ProcessingFigures,
    ProcessingPoint,
    ProcessingTimeReport,
    ProcessingType,
    QueueFigures,
    QueuePoint,
    Report,
    ReportName,
    Scope,
    ServiceFigures,
    ServiceLevelReport,
    ServicePoint,
    ServiceType,
    Thresholds,
    average_seconds,
    bucket_column,
    crossed,
    period_start,
)
from msgcenter.settings import Settings
from msgcenter.store import control_instances as instance_store
from msgcenter.store import reports as report_store
from msgcenter.store.database import Database

#: what each report covers when the caller does not say: (period, granularity)
DEFAULTS: dict[ReportName, tuple[timedelta, Granularity]] = {
    ReportName.SERVICE_LEVEL: (timedelta(hours=24), Granularity.HOUR),
    ReportName.PROCESSING_TIME: (timedelta(hours=24), Granularity.HOUR),
    ReportName.EVENT_HISTORY: (timedelta(days=30), Granularity.DAY),
}
SERVICE_COLUMNS = ("events", "sent", *ERROR_KINDS, "sending_count", "sending_ms")
#: total time counts the sent messages, as sending time does
TIME_COLUMNS = ("queue_count", "sending_count", *(f"{m}_ms" for m in MEASURES))
HISTOGRAM_COLUMNS = tuple(bucket_column(m, b) for m in MEASURES for b in range(BUCKETS))


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """What a report covers (None: its default, or every instance, channel, event type)."""

    start: datetime | None = None
    end: datetime | None = None
    granularity: Granularity | None = None
    #: an execution instance's internal name
    instance: str | None = None
    #: email, sms, ios, android, or a channel code
    channel: str | None = None
    event_type: str | None = None


@dataclass(frozen=True, slots=True)
class IndicatorValue:
    """One indicator of one instance over the last hours, with its check (for ``/metrics``)."""

    #: the instance's internal name (its instance id once it is no longer registered)
    instance: str
    #: "" for every event type of the instance
    event_type: str
    check: Check


@dataclass(frozen=True, slots=True)
class _Scoped:
    """A resolved query: the period, the aggregate filter, and the scope shown."""

    period: Period
    where: report_store.ReportFilter
    scope: Scope


class ReportsService:
    """The reports of one control instance."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._thresholds = settings.reports.thresholds()

    @property
    def thresholds(self) -> Thresholds:
        """The warning and alert thresholds, per indicator and event type."""
        return self._thresholds

    @property
    def window_hours(self) -> int:
        """The last hours :meth:`indicators` covers."""
        return self._settings.reports.metrics_window_hours

    def report(self, name: ReportName, query: ReportQuery, operator: Operator) -> Report:
        """The report ``name`` over ``query``; an operator restricted to a folder gets its
        folder's events only. Raises :class:`InvalidInputError` for a bad period or channel,
        :class:`NotFoundError` for an unknown instance."""
        if name is ReportName.SERVICE_LEVEL:
            return self.service_level(query, operator)
        if name is ReportName.PROCESSING_TIME:
            return self.processing_time(query, operator)
        return self.event_history(query, operator)

    def service_level(self, query: ReportQuery, operator: Operator) -> ServiceLevelReport:
        """Incoming events and sent messages per period, error rate and its breakdown, average
        sending time; overall and per event type."""
        with self._db.read() as conn:
            scoped = self._scoped(conn, ReportName.SERVICE_LEVEL, query, operator)
            sums = self._event_sums(conn, scoped, SERVICE_COLUMNS)
        totals = ServiceFigures.of(sums.totals)
        checks = self._checks(_service_indicators(totals), SERVICE_LEVEL_INDICATORS, None)
        by_type = []
        for row in sums.by_type:
            figures = ServiceFigures.of(row)
            by_type.append(
                ServiceType(
                    row["event_type"],
                    figures,
                    self._checks(
                        _service_indicators(figures), SERVICE_LEVEL_INDICATORS, row["event_type"]
                    ),
                )
            )
        series = [
            ServicePoint(start, ServiceFigures.of(row))
            for start, row in _by_period(scoped.period, sums.series, SERVICE_COLUMNS)
        ]
        return ServiceLevelReport(
            report=ReportName.SERVICE_LEVEL,
            scope=scoped.scope,
            totals=totals,
            checks=checks,
            series=series,
            by_type=by_type,
            crossed=crossed([*checks, *(c for t in by_type for c in t.checks)]),
        )

    def processing_time(self, query: ReportQuery, operator: Operator) -> ProcessingTimeReport:
        """Queuing, sending and total time (averages and estimated p50/p95/p99), overall and per
        event type, and the queue sizes sampled on the execution instances."""
        with self._db.read() as conn:
            scoped = self._scoped(conn, ReportName.PROCESSING_TIME, query, operator)
            sums = self._event_sums(
                conn, scoped, (*TIME_COLUMNS, *HISTOGRAM_COLUMNS), series=TIME_COLUMNS
            )
            queue_by = _granularity_group(scoped.period.granularity)
            queues = report_store.queue_sums(
                conn, scoped.where.start, scoped.where.end, scoped.where.instance_id, ["queue"]
            )
            queue_series = report_store.queue_sums(
                conn,
                scoped.where.start,
                scoped.where.end,
                scoped.where.instance_id,
                [queue_by, "queue"],
            )
        totals = ProcessingFigures.of(sums.totals)
        queue_figures = [QueueFigures.of(row["queue"], row) for row in queues]
        biggest = max(
            (q.max_pending_events for q in queue_figures if q.max_pending_events is not None),
            default=None,
        )
        checks = [
            *self._checks(totals.indicators(), PROCESSING_INDICATORS, None),
            self._thresholds.check("max_queue_size", biggest),
        ]
        by_type = []
        for row in sums.by_type:
            figures = ProcessingFigures.of(row)
            by_type.append(
                ProcessingType(
                    row["event_type"],
                    figures,
                    self._checks(figures.indicators(), PROCESSING_INDICATORS, row["event_type"]),
                )
            )
        series = [
            ProcessingPoint(
                start,
                average_seconds(row["queue_ms"], row["queue_count"]),
                average_seconds(row["sending_ms"], row["sending_count"]),
                average_seconds(row["total_ms"], row["sending_count"]),
            )
            for start, row in _by_period(scoped.period, sums.series, TIME_COLUMNS)
        ]
        return ProcessingTimeReport(
            report=ReportName.PROCESSING_TIME,
            scope=scoped.scope,
            totals=totals,
            checks=checks,
            by_type=by_type,
            series=series,
            queues=queue_figures,
            queue_series=_queue_series(scoped.period, queue_series, queue_by),
            crossed=crossed([*checks, *(c for t in by_type for c in t.checks)]),
        )

    def event_history(self, query: ReportQuery, operator: Operator) -> EventHistoryReport:
        """A pivot of events and sent messages: a row per event type, a column per period."""
        with self._db.read() as conn:
            scoped = self._scoped(conn, ReportName.EVENT_HISTORY, query, operator)
            by = _granularity_group(scoped.period.granularity)
            rows = report_store.event_sums(
                conn, scoped.where, ["event_type", by], ("events", "sent")
            )
        starts = scoped.period.starts()
        index = {start: i for i, start in enumerate(starts)}
        cells: dict[str, list[list[int]]] = {}
        totals = [[0, 0] for _ in starts]
        for row in rows:
            at = index.get(period_start(row[by], scoped.period.granularity))
            if at is None:
                continue
            held = cells.get(row["event_type"])
            if held is None:
                held = cells[row["event_type"]] = [[0, 0] for _ in starts]
            for target in (held[at], totals[at]):
                target[0] += int(row["events"] or 0)
                target[1] += int(row["sent"] or 0)
        history = [
            HistoryRow(
                event_type=event_type,
                cells=[HistoryCell(events, sent) for events, sent in values],
                events=sum(v[0] for v in values),
                sent=sum(v[1] for v in values),
            )
            for event_type, values in sorted(cells.items())
        ]
        return EventHistoryReport(
            report=ReportName.EVENT_HISTORY,
            scope=scoped.scope,
            periods=starts,
            rows=history,
            totals=[HistoryCell(events, sent) for events, sent in totals],
            events=sum(r.events for r in history),
            sent=sum(r.sent for r in history),
        )

    def indicators(self, now: datetime | None = None) -> list[IndicatorValue]:
        """Every watched indicator of every instance over the hours (of the events' creation)
        overlapping the last ``reports.metrics_window_hours``: per event type, and over all
        types (``event_type`` "")."""
        now = now or datetime.now(UTC)
        hours = self._settings.reports.metrics_window_hours
        start = (now - timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
        end = now + timedelta(hours=1)
        columns = tuple(dict.fromkeys((*SERVICE_COLUMNS, *TIME_COLUMNS, *HISTOGRAM_COLUMNS)))
        where = report_store.ReportFilter(start, end)
        with self._db.read() as conn:
            names = {
                i.instance_id: i.name
                for i in instance_store.list_all(conn)
                if i.instance_id is not None
            }
            typed = report_store.event_sums(conn, where, ["instance_id", "event_type"], columns)
            overall = report_store.event_sums(conn, where, ["instance_id"], columns)
            queues = report_store.queue_sums(conn, start, end, None, ["instance_id"])
        found = []
        for row in [*typed, *overall]:
            instance = names.get(row["instance_id"], row["instance_id"])
            event_type = row.get("event_type")
            values = {
                **_service_indicators(ServiceFigures.of(row)),
                **ProcessingFigures.of(row).indicators(),
            }
            for check in self._checks(values, PER_TYPE_INDICATORS, event_type):
                found.append(IndicatorValue(instance, event_type or "", check))
        for row in queues:
            instance = names.get(row["instance_id"], row["instance_id"])
            value = row["pending_events_max"] if row["samples"] else None
            found.append(
                IndicatorValue(instance, "", self._thresholds.check("max_queue_size", value))
            )
        return found

    # -- helpers ----------------------------------------------------------------------------

    def _scoped(
        self, conn: Connection, name: ReportName, query: ReportQuery, operator: Operator
    ) -> _Scoped:
        operator.require(Right.MC_ADMIN)
        default_period, default_granularity = DEFAULTS[name]
        period = Period.of(
            query.start,
            query.end,
            query.granularity or default_granularity,
            now=datetime.now(UTC),
            default=default_period,
        )
        channel = _channel(query.channel)
        instance_id = None
        if query.instance is not None:
            found = instance_store.get(conn, query.instance)
            if found.instance_id is None:
                raise ConflictError(
                    f"execution instance '{query.instance}' has no instance id",
                    detail="initialize its connection first: it has no archive yet",
                )
            instance_id = found.instance_id
        where = report_store.ReportFilter(
            start=period.start,
            end=period.end,
            instance_id=instance_id,
            channel=None if channel is None else int(channel),
            event_type=query.event_type,
            folder=operator.folder,
        )
        scope = Scope(
            start=period.start,
            end=period.end,
            granularity=period.granularity,
            instance=query.instance,
            channel=None if channel is None else channel.label,
            event_type=query.event_type,
            folder=operator.folder,
        )
        return _Scoped(period, where, scope)

    def _event_sums(
        self,
        conn: Connection,
        scoped: _Scoped,
        columns: Sequence[str],
        *,
        series: Sequence[str] | None = None,
    ) -> _Sums:
        by = _granularity_group(scoped.period.granularity)
        totals = report_store.event_sums(conn, scoped.where, [], columns)
        return _Sums(
            totals=totals[0] if totals else {},
            by_type=report_store.event_sums(conn, scoped.where, ["event_type"], columns),
            series=report_store.event_sums(conn, scoped.where, [by], series or columns),
            by=by,
        )

    def _checks(
        self, values: Mapping[str, float | None], indicators: Iterable[str], event_type: str | None
    ) -> list[Check]:
        return [self._thresholds.check(i, values.get(i), event_type) for i in indicators]


@dataclass(frozen=True, slots=True)
class _Sums:
    totals: Mapping[str, Any]
    by_type: list[dict[str, Any]]
    series: list[dict[str, Any]]
    by: str


def _service_indicators(figures: ServiceFigures) -> dict[str, float | None]:
    return {
        "error_rate": figures.error_rate,
        "average_sending_seconds": figures.average_sending_seconds,
    }


def _granularity_group(granularity: Granularity) -> str:
    """The aggregate group a granularity folds from: hours, else days."""
    return "hour" if granularity is Granularity.HOUR else "day"


def _by_period(
    period: Period, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]
) -> list[tuple[datetime, dict[str, int]]]:
    """Rows of hours or days folded into the report's periods (every period, empty ones as 0)."""
    starts = period.starts()
    folded: dict[datetime, dict[str, int]] = {s: dict.fromkeys(columns, 0) for s in starts}
    for row in rows:
        moment = row.get("hour") or row.get("day")
        if moment is None:
            continue
        target = folded.get(period_start(moment, period.granularity))
        if target is None:
            continue
        for column in columns:
            target[column] += int(row[column] or 0)
    return [(s, folded[s]) for s in starts]


def _queue_series(period: Period, rows: Iterable[Mapping[str, Any]], by: str) -> list[QueuePoint]:
    """Queue sums of hours or days folded into the report's periods, per queue."""
    folded: dict[tuple[datetime, str], dict[str, int | None]] = {}
    for row in rows:
        key = (period_start(row[by], period.granularity), row["queue"])
        held = folded.get(key)
        if held is None:
            folded[key] = dict(row)
            continue
        for name in ("samples", "pending_events_sum", "pending_messages_sum"):
            held[name] = int(held[name] or 0) + int(row[name] or 0)
        for name in ("pending_events_min", "pending_messages_min"):
            held[name] = _pick(min, held[name], row[name])
        for name in ("pending_events_max", "pending_messages_max"):
            held[name] = _pick(max, held[name], row[name])
    return [
        QueuePoint(start, QueueFigures.of(queue, sums))
        for (start, queue), sums in sorted(folded.items())
    ]


def _pick(choose: Any, a: int | None, b: int | None) -> int | None:
    if a is None or b is None:
        return a if b is None else b
    return int(choose(a, b))


def _channel(value: str | None) -> Channel | None:
    if value is None:
        return None
    text = value.strip().lower()
    try:
        return Channel(int(text)) if text.isdigit() else CHANNEL_LABELS[text]
    except (KeyError, ValueError):
        raise InvalidInputError(
            f"unknown channel {value!r}",
            detail="channel: email, sms, ios or android (or a channel code: 0, 1, 41, 42)",
        ) from None
