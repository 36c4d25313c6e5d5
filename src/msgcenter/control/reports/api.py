"""The control instance's report API (``mc_admin``): service level, processing time and event
history as JSON, or as CSV with ``?format=csv`` (SPEC §4)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from msgcenter.control.reports.service import DEFAULTS, ReportQuery, ReportsService
from msgcenter.errors import NotFoundError
from msgcenter.operators import Right
from msgcenter.reports import (
    INDICATORS,
    EventHistoryReport,
    Granularity,
    ProcessingTimeReport,
    ReportName,
    ServiceLevelReport,
    to_csv,
)
from msgcenter.web.access import Admin, require
from msgcenter.web.params import UtcMoment
from msgcenter.web.problems import API_ERRORS, documented
from msgcenter.web.state import from_state

Reports = Annotated[ReportsService, Depends(from_state("reports"))]
router = APIRouter(
    prefix="/api/v1/reports",
    tags=["reports"],
    dependencies=[Depends(require(Right.MC_ADMIN))],
    responses=API_ERRORS,
)
CSV = "text/csv; charset=utf-8"


@dataclasses.dataclass(frozen=True, slots=True)
class ReportParameters:
    """What a report covers; times are ISO 8601 (without an offset: UTC)."""

    start: Annotated[
        UtcMoment,
        Query(
            alias="from",
            description="start of the period (rounded down to its hour); default: the "
            "report's default length before `to`",
        ),
    ] = None
    end: Annotated[UtcMoment, Query(alias="to", description="end of the period (default: now)")] = (
        None
    )
    granularity: Annotated[
        Granularity | None,
        Query(description="how the period is divided (default: hour; day for event-history)"),
    ] = None
    instance: Annotated[
        str | None, Query(description="an execution instance's internal name (default: all)")
    ] = None
    channel: Annotated[
        str | None, Query(description="email, sms, ios or android (default: all)")
    ] = None
    event_type: Annotated[
        str | None, Query(alias="type", description="one event type (default: all)")
    ] = None
    format: Annotated[Literal["json", "csv"], Query(description="json or csv")] = "json"

    def query(self) -> ReportQuery:
        return ReportQuery(
            start=self.start,
            end=self.end,
            granularity=self.granularity,
            instance=self.instance,
            channel=self.channel,
            event_type=self.event_type,
        )


Parameters = Annotated[ReportParameters, Depends()]


@dataclasses.dataclass(frozen=True, slots=True)
class ReportInfo:
    """One report: its name, what it shows, its default period and granularity."""

    name: ReportName
    title: str
    description: str
    default_hours: int
    default_granularity: Granularity


@dataclasses.dataclass(frozen=True, slots=True)
class ThresholdOut:
    """The warning and alert levels of one indicator (null: not watched)."""

    indicator: str
    warning: float | None
    alert: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class ThresholdsOut:
    """The thresholds of every indicator, and their overrides per event type."""

    defaults: list[ThresholdOut]
    event_types: dict[str, list[ThresholdOut]]


TITLES = {
    ReportName.SERVICE_LEVEL: (
        "Service level",
        "Incoming events and sent messages per period, error rate with its breakdown (not "
        "taken into account, expired, delivery failed, ignored), average sending time.",
    ),
    ReportName.PROCESSING_TIME: (
        "Processing time",
        "Queuing, sending and total time (average, p50, p95, p99) overall and per event "
        "type, and the queue sizes (minimum, average, maximum).",
    ),
    ReportName.EVENT_HISTORY: (
        "Event history",
        "Events and sent messages by event type and period.",
    ),
}


@router.get("", response_model=list[ReportInfo], summary="The reports")
async def list_reports() -> Any:
    return [
        ReportInfo(
            name=name,
            title=TITLES[name][0],
            description=TITLES[name][1],
            default_hours=int(period.total_seconds() // 3600),
            default_granularity=granularity,
        )
        for name, (period, granularity) in DEFAULTS.items()
    ]


@router.get(
    "/thresholds",
    response_model=ThresholdsOut,
    summary="Warning and alert thresholds per indicator and event type",
)
async def thresholds(reports: Reports) -> Any:
    table = reports.thresholds

    def listed(found: dict[str, Any]) -> list[ThresholdOut]:
        return [ThresholdOut(i, found[i].warning, found[i].alert) for i in INDICATORS if i in found]

    return ThresholdsOut(
        defaults=listed(dict(table.defaults)),
        event_types={t: listed(dict(o)) for t, o in sorted(table.per_type.items())},
    )


def _described(name: ReportName, model: type) -> dict[str, Any]:
    return {
        "summary": TITLES[name][0],
        "description": TITLES[name][1]
        + " Figures count archived events (final ones) by the hour of their creation; "
        "`crossed` lists the indicators at or above a threshold. `?format=csv` answers CSV.",
        "responses": {
            200: {
                "model": model,
                "content": {"text/csv": {"schema": {"type": "string"}}},
                "description": "The report",
            },
            # an execution instance that is not registered (404), or has no archive yet (409)
            **documented(404, 409),
        },
    }


async def _answer(
    reports: ReportsService, name: ReportName, operator: Admin, parameters: ReportParameters
) -> Response:
    # sums of aggregates read from the database, then shaped: off the event loop
    report = await asyncio.to_thread(reports.report, name, parameters.query(), operator)
    if parameters.format == "csv":
        filename = f"{name.value}-{report.scope.start:%Y%m%dT%H%M}.csv"
        return Response(
            to_csv(report),
            media_type=CSV,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return Response(orjson.dumps(report), media_type="application/json")


@router.get("/service-level", **_described(ReportName.SERVICE_LEVEL, ServiceLevelReport))
async def service_level(reports: Reports, operator: Admin, parameters: Parameters) -> Response:
    return await _answer(reports, ReportName.SERVICE_LEVEL, operator, parameters)


@router.get("/processing-time", **_described(ReportName.PROCESSING_TIME, ProcessingTimeReport))
async def processing_time(reports: Reports, operator: Admin, parameters: Parameters) -> Response:
    return await _answer(reports, ReportName.PROCESSING_TIME, operator, parameters)


@router.get("/event-history", **_described(ReportName.EVENT_HISTORY, EventHistoryReport))
async def event_history(reports: Reports, operator: Admin, parameters: Parameters) -> Response:
    return await _answer(reports, ReportName.EVENT_HISTORY, operator, parameters)


@router.get("/{name}", include_in_schema=False)
async def unknown_report(name: str) -> Response:
    raise NotFoundError(
        f"no report '{name}'",
        detail="reports: " + ", ".join(r.value for r in ReportName),
    )
