"""The execution instance's archive export (``mc_admin``): what the control instance's archiving pulls.

Pages are JSON objects of columns (see :mod:`msgcenter.archives`), encoded
with orjson off the event loop. An operator restricted to a folder sees only
that folder's events, quarantine rows and tracking logs: this is how several brands share
one execution instance and each control instance archives only its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import Connection
from starlette.responses import Response

from msgcenter.archives import (
    Cursor,
    encode_event_page,
    encode_quarantine_page,
    encode_tracking_page,
)
from msgcenter.auth.authenticator import Authenticator
from msgcenter.errors import InvalidInputError, PermissionDeniedError
from msgcenter.operators import Operator, Right
from msgcenter.store import archive as archive_store
from msgcenter.store.database import Database
from msgcenter.web.credentials import operator_of

MAX_PAGE = 100_000

AfterAt = Annotated[
    datetime | None,
    Query(description="last_modified of the last row already taken (ISO 8601 with offset)"),
]
AfterId = Annotated[int, Query(ge=0, description="id of the last row already taken")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="most rows in the page")]
Folder = Annotated[
    str | None,
    Query(description="only this folder (an operator restricted to a folder always gets its own)"),
]
PAGE_DOC = {
    200: {
        "description": "A page: one list per field, all of the same length",
        "content": {"application/json": {}},
    }
}


def archive_export_router(auth: Authenticator, db: Database) -> APIRouter:
    """Routes under ``/api/v1/admin/archive``."""
    router = APIRouter(prefix="/api/v1/admin/archive", tags=["admin"])

    async def scope(request: Request, folder: str | None) -> str | None:
        operator = await operator_of(auth, request)
        operator.require(Right.MC_ADMIN)
        return _folder(operator, folder)

    def page_route(
        path: str,
        name: str,
        summary: str,
        description: str,
        export: Callable[[Connection, Cursor | None, int, str | None], Any],
        encode: Callable[[Any], bytes],
    ) -> None:
        async def page(
            request: Request,
            after_at: AfterAt = None,
            after_id: AfterId = 0,
            limit: Limit = 5_000,
            folder: Folder = None,
        ) -> Response:
            target = await scope(request, folder)
            after = _cursor(after_at, after_id)

            def read() -> bytes:
                with db.read() as conn:
                    exported = export(conn, after, limit, target)
                return encode(exported)

            return Response(await asyncio.to_thread(read), media_type="application/json")

        router.add_api_route(
            path,
            page,
            methods=["GET"],
            name=name,
            summary=summary,
            description=description,
            responses=PAGE_DOC,
        )

    page_route(
        "",
        "events_page",
        "Events in a final status changed after a cursor, with their delivery logs",
        "Ordered by (last_modified, id); the next page starts after the last event of this "
        "one. A page shorter than `limit` is the last one for now.",
        archive_store.export_events,
        encode_event_page,
    )
    page_route(
        "/quarantine",
        "quarantine_page",
        "Quarantine rows changed after a cursor",
        "Ordered by (last_modified, id), like the event pages.",
        archive_store.export_quarantine,
        encode_quarantine_page,
    )
    page_route(
        "/tracking",
        "tracking_page",
        "Tracking logs (opens, clicks) recorded after a cursor",
        "Ordered by (created, id); tracking logs never change once recorded.",
        archive_store.export_tracking,
        encode_tracking_page,
    )
    return router


def _folder(operator: Operator, asked: str | None) -> str | None:
    if operator.folder is None:
        return asked
    if asked not in (None, operator.folder):
        raise PermissionDeniedError(
            f"operator '{operator.login}' is restricted to folder '{operator.folder}', not '{asked}'"
        )
    return operator.folder


def _cursor(after_at: datetime | None, after_id: int) -> Cursor | None:
    if after_at is None:
        return None
    if after_at.tzinfo is None:
        raise InvalidInputError(
            "after_at has no UTC offset", detail="after_at must carry an offset, e.g. +00:00"
        )
    return after_at, after_id
