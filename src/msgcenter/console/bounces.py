"""The execution instance's console: the kept bounce reports (SPEC §3.7) with the counts by kind
of the last 24 hours, filtered by kind and address, each linked to its event's page. Reading
them takes ``mc_admin``, as in the API; an operator of a folder sees its folder's only."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from msgcenter.bounces import ReportFilter, ReportKind, parse_kind
from msgcenter.console.route import ConsoleRoute
from msgcenter.console.web import Admin, render
from msgcenter.execution.bounce_reports import BounceReports
from msgcenter.web.params import MAX_ROW_ID
from msgcenter.web.state import from_state

Reports = Annotated[BounceReports, Depends(from_state("bounce_reports"))]
PAGE = 50

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


@router.get("/bounces")
async def bounces_page(
    request: Request,
    user: Admin,
    reports: Reports,
    kind: str = "",
    recipient: str = "",
    before: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
) -> Response:
    criteria = ReportFilter(
        kind=parse_kind(kind) if kind else None, recipient=recipient.strip() or None
    )
    found, counted = await asyncio.gather(
        asyncio.to_thread(
            reports.search, criteria, user.operator, before_id=before, limit=PAGE + 1
        ),
        asyncio.to_thread(reports.counts, user.operator),
    )
    context: dict[str, Any] = {
        "reports": found[:PAGE],
        "more": found[PAGE - 1].id if len(found) > PAGE else None,
        "counted": counted,
        "filters": {"kind": kind, "recipient": recipient},
        "kinds": [k.value for k in ReportKind],
    }
    fragment = "hx-request" in request.headers and "hx-boosted" not in request.headers
    return render(
        request, "execution/bounces_rows.html" if fragment else "execution/bounces.html", **context
    )
