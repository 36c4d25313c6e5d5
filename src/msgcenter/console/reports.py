"""The control instance's report pages (SPEC §4): service level, processing time and event
history over a period, for one execution instance or all, one channel or all, each with its
charts, its crossed thresholds and a CSV download — from the service the report API uses.

A chart travels as its Chart.js configuration in a ``<script type="application/json">``
element that ``console.js`` draws (no inline script).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from msgcenter.console.route import ConsoleRoute
from msgcenter.console.web import Admin, ConsoleUser, redirect, render
from msgcenter.control.folders import sees
from msgcenter.control.instances.service import InstanceService
from msgcenter.control.reports.service import ReportQuery, ReportsService
from msgcenter.errors import InvalidInputError, NotFoundError
from msgcenter.events.model import Channel
from msgcenter.reports import (
    ERROR_KINDS,
    Granularity,
    ProcessingTimeReport,
    Report,
    ReportName,
    ServiceLevelReport,
    to_csv,
)
from msgcenter.web.params import form_moment
from msgcenter.web.state import from_state

Reports = Annotated[ReportsService, Depends(from_state("reports"))]
Instances = Annotated[InstanceService, Depends(from_state("instances"))]
TITLES = {
    ReportName.SERVICE_LEVEL: "Service level",
    ReportName.PROCESSING_TIME: "Processing time",
    ReportName.EVENT_HISTORY: "Event history",
}
#: the colours of the charts' series, in order
PALETTE = ("#1f5fbf", "#2e8540", "#c0392b", "#d4a017", "#7d3c98", "#138d90", "#6e6e6e")
#: the query fields of a report page
FIELDS = ("start", "end", "granularity", "instance", "channel", "type")

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


@router.get("/reports")
async def reports_home(user: Admin) -> Response:
    return redirect(f"/console/reports/{ReportName.SERVICE_LEVEL.value}")


@router.get("/reports/{name}")
async def report_page(
    request: Request, name: str, user: Admin, reports: Reports, instances: Instances
) -> Response:
    chosen = _report_name(name)
    filters = {field: request.query_params.get(field, "").strip() for field in FIELDS}
    report = await asyncio.to_thread(reports.report, chosen, _query(filters), user.operator)
    charts = _charts(report)
    return render(
        request,
        f"control/report_{chosen.value.replace('-', '_')}.html",
        report=report,
        name=chosen,
        titles=TITLES,
        filters=filters,
        charts=charts,
        csv_query=request.url.query,
        instances=await _instances(instances, user),
        channels=[c.label for c in Channel],
        granularities=[g.value for g in Granularity],
        error_kinds=ERROR_KINDS,
    )


@router.get("/reports/{name}/csv")
async def report_csv(request: Request, name: str, user: Admin, reports: Reports) -> Response:
    chosen = _report_name(name)
    filters = {field: request.query_params.get(field, "").strip() for field in FIELDS}
    report = await asyncio.to_thread(reports.report, chosen, _query(filters), user.operator)
    filename = f"{chosen.value}-{report.scope.start:%Y%m%dT%H%M}.csv"
    return Response(
        to_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _report_name(name: str) -> ReportName:
    try:
        return ReportName(name)
    except ValueError:
        raise NotFoundError(
            f"no report '{name}'", detail="reports: " + ", ".join(r.value for r in ReportName)
        ) from None


def _query(filters: dict[str, str]) -> ReportQuery:
    granularity = filters["granularity"]
    if granularity and granularity not in {g.value for g in Granularity}:
        raise InvalidInputError(
            "invalid granularity",
            detail=f"granularity: {granularity!r} is not hour, day, week or month",
        )
    return ReportQuery(
        start=form_moment(filters["start"], "from"),
        end=form_moment(filters["end"], "to"),
        granularity=Granularity(granularity) if granularity else None,
        instance=filters["instance"] or None,
        channel=filters["channel"] or None,
        event_type=filters["type"] or None,
    )


async def _instances(instances: InstanceService, user: ConsoleUser) -> list[str]:
    registered = await asyncio.to_thread(instances.list_all)
    return [i.name for i in registered if sees(user.operator, i.folder)]


# -- charts ------------------------------------------------------------------------------------


def _charts(report: Report) -> dict[str, dict[str, Any]]:
    """The Chart.js configurations of a report, by the name its page gives each chart."""
    if isinstance(report, ServiceLevelReport):
        labels = [_label(p.period, report) for p in report.series]
        return {
            "service-level": _chart(
                "bar",
                labels,
                [
                    ("Incoming events", [p.figures.events for p in report.series]),
                    ("Messages sent", [p.figures.sent for p in report.series]),
                    ("Errors", [p.figures.errors for p in report.series]),
                ],
            ),
            "error-rate": _chart(
                "line",
                labels,
                [
                    (
                        "Error rate (%)",
                        [_percent(p.figures.error_rate) for p in report.series],
                    ),
                ],
            ),
        }
    if isinstance(report, ProcessingTimeReport):
        labels = [_label(p.period, report) for p in report.series]
        queues = sorted({q.figures.queue for q in report.queue_series})
        queue_labels = sorted({q.period for q in report.queue_series})
        by_queue = {(q.figures.queue, q.period): q.figures for q in report.queue_series}
        return {
            "processing-time": _chart(
                "line",
                labels,
                [
                    ("Average queuing (s)", [p.average_queue_seconds for p in report.series]),
                    ("Average sending (s)", [p.average_sending_seconds for p in report.series]),
                    ("Average total (s)", [p.average_total_seconds for p in report.series]),
                ],
            ),
            "queue-size": _chart(
                "line",
                [_label(p, report) for p in queue_labels],
                [
                    (
                        f"Pending {queue} events (average)",
                        [
                            f.average_pending_events
                            if (f := by_queue.get((queue, p))) is not None
                            else None
                            for p in queue_labels
                        ],
                    )
                    for queue in queues
                ],
            ),
        }
    return {
        "event-history": _chart(
            "bar",
            [_label(p, report) for p in report.periods],
            [(row.event_type, [c.events for c in row.cells]) for row in report.rows],
            stacked=True,
        )
    }


def _chart(
    kind: str, labels: list[str], series: list[tuple[str, list[Any]]], *, stacked: bool = False
) -> dict[str, Any]:
    datasets = [
        {
            "label": label,
            "data": data,
            "backgroundColor": PALETTE[index % len(PALETTE)],
            "borderColor": PALETTE[index % len(PALETTE)],
            "spanGaps": True,
        }
        for index, (label, data) in enumerate(series)
    ]
    axes = {"x": {"stacked": stacked}, "y": {"stacked": stacked, "beginAtZero": True}}
    return {
        "type": kind,
        "data": {"labels": labels, "datasets": datasets},
        "options": {
            "animation": False,
            "responsive": True,
            "maintainAspectRatio": False,
            "scales": axes,
        },
    }


def _label(moment: datetime, report: Report) -> str:
    granularity = report.scope.granularity
    if granularity is Granularity.HOUR:
        return moment.strftime("%Y-%m-%d %H:00")
    if granularity is Granularity.MONTH:
        return moment.strftime("%Y-%m")
    return moment.strftime("%Y-%m-%d")


def _percent(rate: float | None) -> float | None:
    return None if rate is None else round(rate * 100, 2)
