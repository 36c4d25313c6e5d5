"""The execution instance's archive export API (``mc_admin``): the pages the control instance's
archiving pulls (see :mod:`msgcenter.execution.archive_export`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from msgcenter.execution.archive_export import ArchiveExport, PageKind
from msgcenter.operators import Right
from msgcenter.web.access import Admin, require
from msgcenter.web.params import MAX_ROW_ID
from msgcenter.web.problems import API_ERRORS
from msgcenter.web.state import from_state

MAX_PAGE = 100_000

AfterAt = Annotated[
    datetime | None,
    Query(description="last_modified of the last row already taken (ISO 8601 with offset)"),
]
AfterId = Annotated[int, Query(ge=0, le=MAX_ROW_ID, description="id of the last row already taken")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="most rows in the page")]
Folder = Annotated[
    str | None,
    Query(description="only this folder (an operator restricted to a folder always gets its own)"),
]
PAGE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A page: one list per field, all of the same length",
        "content": {"application/json": {}},
    }
}


Export = Annotated[ArchiveExport, Depends(from_state("archive_export"))]
router = APIRouter(
    prefix="/api/v1/admin/archive",
    tags=["admin"],
    dependencies=[Depends(require(Right.MC_ADMIN))],
    responses=API_ERRORS,
)


@dataclass(frozen=True, slots=True)
class PageQuery:
    """Where a page starts, how long it is, and whose rows it holds."""

    after_at: AfterAt = None
    after_id: AfterId = 0
    limit: Limit = 5_000
    folder: Folder = None


Page = Annotated[PageQuery, Depends()]


async def _page(
    kind: PageKind, export: ArchiveExport, operator: Admin, query: PageQuery
) -> Response:
    # pages run to megabytes: read and encode them off the event loop
    body = await asyncio.to_thread(
        export.page,
        kind,
        operator,
        after_at=query.after_at,
        after_id=query.after_id,
        limit=query.limit,
        folder=query.folder,
    )
    return Response(body, media_type="application/json")


@router.get(
    "",
    name="events_page",
    summary="Events in a final status changed after a cursor, with their delivery logs",
    description="Ordered by (last_modified, id); the next page starts after the last event of "
    "this one. A page shorter than `limit` is the last one for now.",
    responses=PAGE_DOC,
)
async def events_page(export: Export, operator: Admin, query: Page) -> Response:
    return await _page(PageKind.EVENTS, export, operator, query)


@router.get(
    "/quarantine",
    name="quarantine_page",
    summary="Quarantine rows changed after a cursor",
    description="Ordered by (last_modified, id), like the event pages.",
    responses=PAGE_DOC,
)
async def quarantine_page(export: Export, operator: Admin, query: Page) -> Response:
    return await _page(PageKind.QUARANTINE, export, operator, query)


@router.get(
    "/tracking",
    name="tracking_page",
    summary="Tracking logs (opens, clicks) recorded after a cursor",
    description="Ordered by (created, id); tracking logs never change once recorded.",
    responses=PAGE_DOC,
)
async def tracking_page(export: Export, operator: Admin, query: Page) -> Response:
    return await _page(PageKind.TRACKING, export, operator, query)


@router.get(
    "/stats",
    name="stats_page",
    summary="Queue-size and throughput samples (statsSampler) taken after a cursor",
    description="Ordered by (at, id); samples never change once taken. They measure the whole "
    "instance: `folder` does not narrow them.",
    responses=PAGE_DOC,
)
async def stats_page(export: Export, operator: Admin, query: Page) -> Response:
    return await _page(PageKind.STATS, export, operator, query)
