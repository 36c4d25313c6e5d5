"""The kept bounce reports on the execution instance's admin API (``mc_admin``; an operator
restricted to a folder sees its folder's only): a search paged newest first with the cursor of
``GET /api/v1/events``, one report, and the counts by kind over a window."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from msgcenter.bounces import ReportFilter, ReportKind, ShownReport, parse_kind
from msgcenter.execution.bounce_reports import DEFAULT_HOURS, MAX_HOURS, BounceReports
from msgcenter.operators import Right
from msgcenter.web.access import Admin, require
from msgcenter.web.params import MAX_ROW_ID, RowId, UtcMoment, newest_first_page
from msgcenter.web.problems import API_ERRORS, documented
from msgcenter.web.state import from_state

#: the longest page
MAX_PAGE = 500
KINDS = ", ".join(k.value for k in ReportKind)

Reports = Annotated[BounceReports, Depends(from_state("bounce_reports"))]

router = APIRouter(
    prefix="/api/v1/admin/bounce-reports",
    tags=["bounce reports"],
    dependencies=[Depends(require(Right.MC_ADMIN))],
    responses=API_ERRORS,
)


class BounceReportOut(BaseModel):
    """A mail received at a bounce address, as kept (SPEC §3.7)."""

    id: int
    received: datetime
    kind: ReportKind = Field(description="what the mail turned out to be: " + KINDS)
    delivery_log_id: int | None = Field(
        description="the delivery log its bounce address named; null when that log is not here"
    )
    event_id: int | None = Field(description="that delivery log's event")
    folder: str | None = Field(description="that delivery log's folder")
    recipient: str | None = Field(
        description="the delivery log's address, or else the one the report names"
    )
    reason: str = Field(
        description="the remote diagnostic, the feedback type, or what is wrong with the report"
    )
    size: int = Field(description="bytes of the mail as received")


class BounceReportPage(BaseModel):
    """One page of a search; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[BounceReportOut]
    next_cursor: str | None


class BounceReportSummary(BaseModel):
    """Reports received in the last ``hours``, by kind (every kind, zeros too)."""

    hours: int
    since: datetime
    counts: dict[ReportKind, int]
    total: int


# declared before /{report_id}, which would take "summary" for an id
@router.get(
    "/summary",
    response_model=BounceReportSummary,
    summary="Bounce reports received in the last hours, by kind",
)
def summary(
    operator: Admin,
    reports: Reports,
    hours: Annotated[int, Query(ge=1, le=MAX_HOURS)] = DEFAULT_HOURS,
) -> Any:
    counted = reports.counts(operator, hours)
    return {
        "hours": counted.hours,
        "since": counted.since,
        "counts": counted.counts,
        "total": counted.total,
    }


@router.get(
    "",
    response_model=BounceReportPage,
    summary="Search the kept bounce reports, newest first",
)
def search(
    operator: Admin,
    reports: Reports,
    kind: Annotated[str | None, Query(description=KINDS)] = None,
    recipient: Annotated[str | None, Query(description="the whole address")] = None,
    delivery_log_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
    since: Annotated[UtcMoment, Query(description="received at or after (ISO 8601)")] = None,
    until: Annotated[UtcMoment, Query(description="received before (ISO 8601)")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> Any:
    criteria = ReportFilter(
        kind=parse_kind(kind) if kind else None,
        recipient=recipient or None,
        delivery_log_id=delivery_log_id,
        since=since,
        until=until,
    )
    page, next_cursor = newest_first_page(
        lambda before_id, n: reports.search(criteria, operator, before_id=before_id, limit=n),
        cursor,
        limit,
    )
    return {"items": [_out(r) for r in page], "next_cursor": next_cursor}


@router.get(
    "/{report_id}",
    response_model=BounceReportOut,
    summary="One kept bounce report",
    responses=documented(404),
)
def read(report_id: RowId, operator: Admin, reports: Reports) -> Any:
    return _out(reports.get(report_id, operator))


def _out(report: ShownReport) -> dict[str, Any]:
    return asdict(report)
