"""The execution instance's tracking endpoints: the open pixel and the click redirect (SPEC §3.7).

Recipients' mail clients call them, without credentials. A URL whose
signature does not verify — altered, truncated, or never written by this
instance — answers 404 and never redirects. A verified click redirects even
when its log cannot be recorded (delivery log purged, database down): the
recipient's click matters more than its log.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime

import structlog
from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from msgcenter.errors import MsgcenterError
from msgcenter.store import tracking as tracking_store
from msgcenter.store.database import Database
from msgcenter.tracking import LinkSigner, TrackingKind

log = structlog.get_logger(__name__)

#: a transparent 1×1 GIF
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
UNKNOWN = "unknown or altered tracking link"


def tracking_router(db: Database, signer: LinkSigner) -> APIRouter:
    """Routes under ``/t``."""
    router = APIRouter(prefix="/t", tags=["tracking"])

    async def record(
        kind: TrackingKind, delivery_log_id: int, url: str | None, request: Request
    ) -> None:
        def write() -> bool:
            with db.write() as conn:
                return tracking_store.record(
                    conn,
                    kind,
                    delivery_log_id,
                    url,
                    request.headers.get("user-agent"),
                    datetime.now(UTC),
                )

        try:
            if not await asyncio.to_thread(write):
                log.info(
                    "tracking of an unknown delivery log",
                    action="tracking.unknown_log",
                    delivery_log=delivery_log_id,
                )
        except MsgcenterError as exc:
            log.warning(
                "tracking log not recorded",
                action="tracking.not_recorded",
                delivery_log=delivery_log_id,
                error=exc.message,
            )

    @router.get(
        "/o/{delivery_log_id}/{signature}",
        summary="Open pixel: records an open, answers a transparent GIF",
        responses={200: {"content": {"image/gif": {}}}, 404: {"description": UNKNOWN}},
    )
    async def opened(delivery_log_id: str, signature: str, request: Request) -> Response:
        log_id = _log_id(delivery_log_id)
        if log_id is None or not signer.verify(TrackingKind.OPEN, log_id, signature):
            return PlainTextResponse(UNKNOWN, status_code=404)
        await record(TrackingKind.OPEN, log_id, None, request)
        return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})

    @router.get(
        "/c/{delivery_log_id}/{signature}",
        summary="Tracked link: records a click, redirects to the link's target (?u=)",
        responses={302: {"description": "to the target"}, 404: {"description": UNKNOWN}},
        response_class=RedirectResponse,
    )
    async def clicked(
        delivery_log_id: str, signature: str, request: Request, u: str = ""
    ) -> Response:
        log_id = _log_id(delivery_log_id)
        if (
            log_id is None
            or not u.lower().startswith(("http://", "https://"))
            or not signer.verify(TrackingKind.CLICK, log_id, signature, u)
        ):
            return PlainTextResponse(UNKNOWN, status_code=404)
        await record(TrackingKind.CLICK, log_id, u, request)
        return RedirectResponse(u, status_code=302, headers={"Cache-Control": "no-store"})

    return router


def _log_id(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    return int(text)
