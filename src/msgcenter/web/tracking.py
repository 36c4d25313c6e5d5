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
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from msgcenter.execution.tracking import TrackingRecorder
from msgcenter.tracking import LinkSigner, TrackingKind, log_id_of
from msgcenter.web.state import from_state

#: a transparent 1×1 GIF
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
UNKNOWN = "unknown or altered tracking link"


Signer = Annotated[LinkSigner, Depends(from_state("link_signer"))]
Recorder = Annotated[TrackingRecorder, Depends(from_state("tracking"))]
router = APIRouter(prefix="/t", tags=["tracking"])


@router.get(
    "/o/{delivery_log_id}/{signature}",
    summary="Open pixel: records an open, answers a transparent GIF",
    responses={200: {"content": {"image/gif": {}}}, 404: {"description": UNKNOWN}},
)
async def opened(
    delivery_log_id: str, signature: str, request: Request, signer: Signer, recorder: Recorder
) -> Response:
    log_id = log_id_of(delivery_log_id)
    if log_id is None or not signer.verify(TrackingKind.OPEN, log_id, signature):
        return PlainTextResponse(UNKNOWN, status_code=404)
    await asyncio.to_thread(
        recorder.record, TrackingKind.OPEN, log_id, None, request.headers.get("user-agent")
    )
    return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})


@router.get(
    "/c/{delivery_log_id}/{signature}",
    summary="Tracked link: records a click, redirects to the link's target (?u=)",
    responses={302: {"description": "to the target"}, 404: {"description": UNKNOWN}},
    response_class=RedirectResponse,
)
async def clicked(
    delivery_log_id: str,
    signature: str,
    request: Request,
    signer: Signer,
    recorder: Recorder,
    u: str = "",
) -> Response:
    log_id = log_id_of(delivery_log_id)
    if (
        log_id is None
        or not u.lower().startswith(("http://", "https://"))
        or not signer.verify(TrackingKind.CLICK, log_id, signature, u)
    ):
        return PlainTextResponse(UNKNOWN, status_code=404)
    await asyncio.to_thread(
        recorder.record, TrackingKind.CLICK, log_id, u, request.headers.get("user-agent")
    )
    return RedirectResponse(u, status_code=302, headers={"Cache-Control": "no-store"})
