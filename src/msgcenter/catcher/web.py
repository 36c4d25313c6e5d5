"""The web side of the catcher: pages to read, search and delete caught mail, and the same as
JSON; below the mail, the SMS and push notifications the embedded mode caught (``/api/sms``,
``/api/push``).

Mounted by ``msgcenter up`` under ``/catcher``, its catcher in ``app.state.catcher``.

- The list refreshes itself: htmx polls its fragment every two seconds, and the
  fragment answers 204 (nothing to swap) while the mailbox has not changed.
  The search box filters it as one types (address in From, To or the envelope,
  or subject; every word must match, case-insensitive).
- A caught message is untrusted content: every value goes through Jinja2's
  autoescaping, and the HTML part is shown only inside a sandboxed
  ``<iframe srcdoc>`` (no scripts, no forms, no access to this page). The pages
  run no inline script: the Content-Security-Policy allows scripts from this
  origin only (the vendored htmx), and htmx evaluates no expression.
- There is no login, so a delete (a POST) must come from a page of this origin:
  htmx's ``HX-Request`` header (which a cross-site page cannot send without a
  CORS preflight this server never approves), or a same-origin
  ``Sec-Fetch-Site`` / ``Origin``. Any other POST is refused with 403; the JSON
  API deletes with the DELETE method, which a cross-site page cannot send
  either. ``SameSite`` cookies would not help: there is no cookie.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, cast
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined

from msgcenter.catcher.message import CaughtSummary
from msgcenter.catcher.push import CaughtPush, PushCatcher
from msgcenter.catcher.server import SmtpCatcher
from msgcenter.catcher.smsc import KEPT as SMS_KEPT
from msgcenter.catcher.smsc import CaughtSms, ThreadedSmsc
from msgcenter.web.landing import VENDOR

#: the list shows this many messages at most (a search reaches the others)
LIST_LIMIT = 200
#: scripts from this origin only (htmx), none inline; inline styles (the page's, and the
#: e-mail's inside the sandboxed frame, which inherits this policy); images from anywhere
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "img-src * data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
#: what a downloaded attachment or the raw message may do if a browser renders it: nothing
_INERT_HEADERS = {
    **_SECURITY_HEADERS,
    "Content-Security-Policy": "default-src 'none'; sandbox",
}
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._ -]")


def _bytes(size: int) -> str:
    """A size as people read it (1.2 MB)."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


_TEMPLATES = Environment(
    loader=PackageLoader("msgcenter.catcher", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_TEMPLATES.filters["bytes"] = _bytes


#: pages and JSON endpoints over the caught messages (``app.state.catcher``), kept out of the
#: OpenAPI document
router = APIRouter(include_in_schema=False)


def _catcher(request: Request) -> SmtpCatcher:
    return cast(SmtpCatcher, request.app.state.catcher)


# -- pages ----------------------------------------------------------------------------------


@router.get("/", name="catcher_list")
def list_page(request: Request, q: str = "") -> Response:
    return _page(request, "list.html", **_list(request, q, top=None), **_mobile(request))


@router.get("/mobile", name="catcher_mobile_fragment")
def mobile_fragment(request: Request) -> Response:
    """The caught SMS and push notifications (``#mobile``), for htmx."""
    return _page(request, "_mobile.html", **_mobile(request))


@router.get("/list", name="catcher_list_fragment")
def list_fragment(request: Request, q: str = "", v: str = "", top: int | None = None) -> Response:
    """The list alone (``#messages``), for htmx; 204 while the mailbox is as version ``v``.
    Messages newer than ``top`` (the newest the page showed) are marked new."""
    if v and v == _catcher(request).mailbox.version:
        return Response(status_code=204, headers=_SECURITY_HEADERS)
    response = _page(request, "_messages.html", **_list(request, q, top=top))
    if request.headers.get("hx-trigger-name") == "q":
        # typed in the search box: the address bar follows, so the search can be shared
        response.headers["HX-Push-Url"] = _list_url(request, q)
    return response


@router.get("/messages/{message_id}", name="catcher_message")
def message_page(request: Request, message_id: int) -> Response:
    message = _catcher(request).get(message_id)
    if message is None:
        return _notice(request, "Not found", "No such message (it may have been dropped).", 404)
    return _page(
        request,
        "message.html",
        message=message,
        raw_url=request.url_for("catcher_raw", message_id=message.id),
        attachment_url=lambda message_id, index: request.url_for(
            "catcher_attachment", message_id=message_id, index=index
        ),
    )


@router.get("/messages/{message_id}/raw", name="catcher_raw")
def raw_message(request: Request, message_id: int) -> Response:
    message = _catcher(request).get(message_id)
    if message is None:
        return Response("no such message\n", status_code=404, media_type="text/plain")
    # text/plain, not message/rfc822: shown in the browser, never rendered
    return Response(message.raw, media_type="text/plain; charset=utf-8", headers=_INERT_HEADERS)


@router.get("/messages/{message_id}/attachments/{index}", name="catcher_attachment")
def attachment(request: Request, message_id: int, index: int) -> Response:
    message = _catcher(request).get(message_id)
    content = message.attachment_content(index) if message is not None else None
    if message is None or content is None:
        return Response("no such attachment\n", status_code=404, media_type="text/plain")
    filename = message.attachments[index].filename
    # always a download, never rendered here (RFC 6266; filename* per RFC 8187)
    disposition = (
        f'attachment; filename="{_UNSAFE_FILENAME.sub("_", filename)}"; '
        f"filename*=UTF-8''{quote(filename, safe='')}"
    )
    return Response(
        content,
        media_type="application/octet-stream",
        headers={**_INERT_HEADERS, "Content-Disposition": disposition},
    )


@router.post("/messages/{message_id}/delete", name="catcher_delete")
def delete_message(request: Request, message_id: int, q: str = "") -> Response:
    if not _same_origin(request):
        return _cross_site(request)
    _catcher(request).mailbox.delete(message_id)
    return _back_to_list(request, q)


@router.post("/delete-all", name="catcher_clear")
def delete_all(request: Request) -> Response:
    if not _same_origin(request):
        return _cross_site(request)
    _catcher(request).mailbox.clear()
    return _back_to_list(request, "")


# -- JSON -----------------------------------------------------------------------------------


@router.get("/api/messages")
def list_json(
    request: Request, q: str = "", limit: Annotated[int | None, Query(ge=1)] = None
) -> list[dict[str, Any]]:
    """The caught messages, newest first; ``q`` keeps those where every word is in an address
    or the subject."""
    return [_summary(m) for m in _catcher(request).summaries(q, limit)]


@router.get("/api/messages/{message_id}")
def message_json(request: Request, message_id: int) -> Response:
    message = _catcher(request).get(message_id)
    if message is None:
        return _no_message(message_id)
    return JSONResponse(
        {
            **_summary(message.summary),
            "headers": [[name, value] for name, value in message.headers],
            "text": message.text,
            "html": message.html,
            "attachments": [
                {"filename": a.filename, "content_type": a.content_type, "size": a.size}
                for a in message.attachments
            ],
        }
    )


@router.get("/api/sms")
def sms_json(request: Request) -> list[dict[str, Any]]:
    """The SMS caught by the SMSC simulator, newest first."""
    smsc = _smsc(request)
    return [] if smsc is None else [_sms(m) for m in smsc.messages()]


@router.get("/api/push")
def push_json(request: Request) -> list[dict[str, Any]]:
    """The push notifications caught by the local APNs and FCM endpoints, newest first."""
    push = _push(request)
    return [] if push is None else [_notification(n) for n in push.notifications]


@router.delete("/api/messages/{message_id}", status_code=204)
def delete_json(request: Request, message_id: int) -> Response:
    if not _catcher(request).mailbox.delete(message_id):
        return _no_message(message_id)
    return Response(status_code=204)


@router.delete("/api/messages")
def delete_all_json(request: Request) -> dict[str, int]:
    return {"deleted": _catcher(request).mailbox.clear()}


# -- helpers --------------------------------------------------------------------------------


def _list(request: Request, q: str, *, top: int | None) -> dict[str, Any]:
    catcher = _catcher(request)
    mailbox = catcher.mailbox
    # the version before the read: a change during it shows at the next poll
    version = mailbox.version
    q = q.strip()
    found = catcher.summaries(q, LIST_LIMIT + 1)
    messages = found[:LIST_LIMIT]
    count, size = mailbox.stats()
    newest = max((m.id for m in messages), default=0)
    return {
        "q": q,
        "messages": messages,
        "truncated": len(found) > LIST_LIMIT,
        "top": top,
        "count": count,
        "size": size,
        "max_messages": mailbox.max_messages,
        "max_bytes": mailbox.max_bytes,
        "kept_in": str(mailbox.path) if mailbox.path is not None else "",
        "fragment_url": str(request.url_for("catcher_list_fragment")),
        "poll_url": str(
            request.url_for("catcher_list_fragment").include_query_params(
                q=q, v=version, top=max(newest, top or 0)
            )
        ),
        "message_url": lambda message_id: request.url_for("catcher_message", message_id=message_id),
        "delete_url": lambda message_id: request.url_for(
            "catcher_delete", message_id=message_id
        ).include_query_params(q=q),
    }


def _smsc(request: Request) -> ThreadedSmsc | None:
    return cast(ThreadedSmsc | None, getattr(request.app.state, "smsc", None))


def _push(request: Request) -> PushCatcher | None:
    return cast(PushCatcher | None, getattr(request.app.state, "push_catcher", None))


def _mobile(request: Request) -> dict[str, Any]:
    smsc, push = _smsc(request), _push(request)
    return {
        "mobile_url": str(request.url_for("catcher_mobile_fragment")),
        "sms": None if smsc is None else smsc.messages()[:LIST_LIMIT],
        "sms_kept": SMS_KEPT,
        "smpp": "" if smsc is None else f"127.0.0.1:{smsc.port}",
        "push": None if push is None else push.notifications[:LIST_LIMIT],
        "push_url": "" if push is None else push.url,
    }


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    catcher = _catcher(request)
    values: dict[str, Any] = {
        "htmx": f"{VENDOR}/htmx/htmx.min.js",
        "smtp": f"{catcher.host}:{catcher.port}",
        "list_url": str(request.url_for("catcher_list")),
        "clear_url": str(request.url_for("catcher_clear")),
        "delete_url": lambda message_id: request.url_for("catcher_delete", message_id=message_id),
    }
    html = _TEMPLATES.get_template(template).render({**values, **context})
    return HTMLResponse(html, status_code=status_code, headers=_SECURITY_HEADERS)


def _notice(request: Request, title: str, text: str, status_code: int) -> Response:
    return _page(request, "notice.html", status_code, title=title, text=text)


def _list_url(request: Request, q: str) -> str:
    url = request.url_for("catcher_list")
    return str(url.include_query_params(q=q) if q else url)


def _same_origin(request: Request) -> bool:
    """Whether a POST comes from a page of this origin (see the module documentation)."""
    if request.headers.get("hx-request") == "true":
        return True
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


def _cross_site(request: Request) -> Response:
    return _notice(
        request,
        "Refused",
        "This request did not come from a page of the catcher (a cross-site request?): "
        "nothing was deleted.",
        403,
    )


def _back_to_list(request: Request, q: str) -> Response:
    url = _list_url(request, q)
    if request.headers.get("hx-request") == "true":
        # htmx follows this with a full page load
        return Response(status_code=200, headers={**_SECURITY_HEADERS, "HX-Redirect": url})
    return RedirectResponse(url, status_code=303, headers=_SECURITY_HEADERS)


def _no_message(message_id: int) -> Response:
    return JSONResponse({"detail": f"no caught message {message_id}"}, status_code=404)


def _sms(message: CaughtSms) -> dict[str, Any]:
    return {
        "received_at": message.received.isoformat(),
        "from": message.sender,
        "to": message.recipient,
        "text": message.text,
        "parts": message.parts,
        "message_ids": list(message.message_ids),
        "data_coding": message.data_coding,
    }


def _notification(caught: CaughtPush) -> dict[str, Any]:
    return {
        "id": caught.id,
        "received_at": caught.received.isoformat(),
        "channel": caught.channel,
        "app": caught.app,
        "token": caught.token,
        "title": caught.title,
        "body": caught.body,
        "data": caught.data,
    }


def _summary(message: CaughtSummary) -> dict[str, Any]:
    return {
        "id": message.id,
        "kind": message.kind,
        "received_at": message.received_at.isoformat(),
        "mail_from": message.mail_from,
        "rcpt_tos": list(message.rcpt_tos),
        "from": message.sender,
        "to": message.to,
        "subject": message.subject,
        "size": message.size,
    }
