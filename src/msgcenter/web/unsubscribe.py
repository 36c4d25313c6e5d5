"""The execution instance's one-click unsubscribe endpoint (RFC 8058).

Mailbox providers POST ``List-Unsubscribe=One-Click`` to the https URI of a
message's ``List-Unsubscribe`` header when its recipient presses their
"unsubscribe" button; the recipient then leaves that template's stream (its
messages to them are ignored from then on, the rest of their mail is not). A GET
— a person following the link, or a link scanner prefetching it — never
unsubscribes: it answers a page whose button sends the same POST. A URL whose
signature does not verify answers 404, as the tracking links do.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from msgcenter.execution.unsubscriptions import Unsubscriptions
from msgcenter.tracking import LinkSigner, log_id_of
from msgcenter.web.state import from_state

UNKNOWN = "unknown or altered unsubscribe link"
#: RFC 8058 §3.1: the POST body, as a form field
_KEY, _VALUE = "List-Unsubscribe", "One-Click"
#: a one-click body is a few dozen bytes; more is not read
_MAX_BODY = 4096
_MULTIPART = re.compile(rb'name="?List-Unsubscribe"?\r\n(?:[^\r\n]+\r\n)*\r\nOne-Click\r\n')
#: nothing on the page runs or loads; its form posts back to this same URL
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Robots-Tag": "noindex",
    "Referrer-Policy": "no-referrer",
}
_CONFIRM_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Unsubscribe</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">
<h1>Unsubscribe</h1>
<p>Stop receiving these messages at this address?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form>
</body></html>
"""
_DONE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Unsubscribed</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">
<h1>Unsubscribed</h1><p>You will not receive these messages any more.</p>
</body></html>
"""

Signer = Annotated[LinkSigner, Depends(from_state("link_signer"))]
Service = Annotated[Unsubscriptions, Depends(from_state("unsubscriptions"))]
router = APIRouter(prefix="/u", tags=["unsubscribe"])


@router.get(
    "/{delivery_log_id}/{signature}",
    summary="Unsubscribe page: a button that sends the one-click POST (a GET changes nothing)",
    response_class=HTMLResponse,
    responses={404: {"description": UNKNOWN}},
)
async def confirm(delivery_log_id: str, signature: str, signer: Signer) -> Response:
    if _verified(signer, delivery_log_id, signature) is None:
        return PlainTextResponse(UNKNOWN, status_code=404)
    return HTMLResponse(_CONFIRM_PAGE, headers=_PAGE_HEADERS)


@router.post(
    "/{delivery_log_id}/{signature}",
    summary="One-click unsubscribe (RFC 8058): the recipient leaves this template's stream",
    response_class=HTMLResponse,
    responses={
        400: {"description": "the body is not List-Unsubscribe=One-Click"},
        404: {"description": UNKNOWN},
    },
)
async def unsubscribe(
    delivery_log_id: str, signature: str, request: Request, signer: Signer, service: Service
) -> Response:
    log_id = _verified(signer, delivery_log_id, signature)
    if log_id is None:
        return PlainTextResponse(UNKNOWN, status_code=404)
    if not _one_click(await _body(request), request.headers.get("content-type", "")):
        return PlainTextResponse(
            "the body must be List-Unsubscribe=One-Click (RFC 8058)", status_code=400
        )
    if not await asyncio.to_thread(service.unsubscribe, log_id):
        return PlainTextResponse(UNKNOWN, status_code=404)
    return HTMLResponse(_DONE_PAGE, headers=_PAGE_HEADERS)


def _verified(signer: LinkSigner, delivery_log_id: str, signature: str) -> int | None:
    """The delivery log id of a URL this instance signed, else None."""
    log_id = log_id_of(delivery_log_id)
    if log_id is None or not signer.verify_unsubscribe(log_id, signature):
        return None
    return log_id


async def _body(request: Request) -> bytes:
    """At most ``_MAX_BODY`` bytes of the body (more is not read)."""
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > _MAX_BODY:
            break
    return data[:_MAX_BODY]


def _one_click(body: bytes, content_type: str) -> bool:
    """Whether the body carries ``List-Unsubscribe=One-Click``, as a URL-encoded or a
    multipart form (RFC 8058 §3.1 allows both)."""
    if content_type.lower().startswith("multipart/form-data"):
        return _MULTIPART.search(body) is not None
    fields = parse_qs(body.decode("latin-1"), keep_blank_values=True)
    return _VALUE in fields.get(_KEY, [])
