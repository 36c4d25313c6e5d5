"""The execution instance's mirror pages: ``/m/<delivery log>/<signature>`` shows a tracked
email as it was sent (SPEC §3.7).

Recipients' browsers call it without credentials. A URL whose signature does not
verify answers 404, as does a message no longer kept. The page is the message's own
HTML, served with a policy that lets it run no script, submit no form and be framed by
no other site: a template's markup is shown, never executed. A text-only message is
shown as preformatted text.
"""

from __future__ import annotations

import asyncio
from html import escape
from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from msgcenter.execution.mirror import MirrorPage, MirrorPages
from msgcenter.tracking import LinkSigner, log_id_of
from msgcenter.web.state import from_state

UNKNOWN = "unknown or altered mirror link, or a message no longer kept"
#: the message's markup may show images and its own styles, nothing active
POLICY = (
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline' https:; "
    "font-src https: data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)

Signer = Annotated[LinkSigner, Depends(from_state("link_signer"))]
Pages = Annotated[MirrorPages, Depends(from_state("mirror_pages"))]
router = APIRouter(prefix="/m", tags=["tracking"])


@router.get(
    "/{delivery_log_id}/{signature}",
    summary="Mirror page: a tracked email as it was sent",
    responses={200: {"content": {"text/html": {}}}, 404: {"description": UNKNOWN}},
    response_class=HTMLResponse,
)
async def mirror(delivery_log_id: str, signature: str, signer: Signer, pages: Pages) -> Response:
    log_id = log_id_of(delivery_log_id)
    if log_id is None or not signer.verify_mirror(log_id, signature):
        return PlainTextResponse(UNKNOWN, status_code=404)
    page = await asyncio.to_thread(pages.page, log_id)
    if page is None:
        return PlainTextResponse(UNKNOWN, status_code=404)
    return HTMLResponse(
        _document(page),
        headers={
            "Content-Security-Policy": POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "private, no-store",
        },
    )


def _document(page: MirrorPage) -> str:
    if page.html:
        return page.html
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{escape(page.subject)}</title></head>"
        f'<body><pre style="white-space:pre-wrap">{escape(page.text)}</pre></body></html>'
    )
