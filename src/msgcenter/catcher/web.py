"""The web side of the catcher: pages to read caught messages, and the same as JSON.

Mounted by ``msgcenter up`` under ``/catcher``, its catcher in ``app.state.catcher``. A caught message is untrusted
content: every value is HTML-escaped, and the HTML part is shown only inside a
sandboxed ``<iframe srcdoc>`` (no scripts, no forms, no access to this page),
under a Content-Security-Policy that forbids scripts on the page itself.
"""

from __future__ import annotations

from html import escape
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from msgcenter.catcher.server import CaughtMessage, SmtpCatcher

#: no script anywhere; inline styles only; images (tracking pixels, logos) may load
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src * data:",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #ddd; vertical-align: top; }
th { background: #f4f4f4; }
pre { white-space: pre-wrap; background: #f8f8f8; padding: .8rem; border: 1px solid #ddd; }
iframe { width: 100%; height: 32rem; border: 1px solid #ddd; }
.muted { color: #777; }
"""


#: pages and JSON endpoints over the caught messages (``app.state.catcher``), kept out of the
#: OpenAPI document
router = APIRouter(include_in_schema=False)


def _catcher(request: Request) -> SmtpCatcher:
    return cast(SmtpCatcher, request.app.state.catcher)


@router.get("/", name="catcher_list")
def list_page(request: Request) -> Response:
    catcher = _catcher(request)
    rows = "".join(
        f"<tr><td>{m.received_at:%Y-%m-%d %H:%M:%S}</td><td>{escape(m.sender or m.mail_from)}</td>"
        f"<td>{escape(m.to or ', '.join(m.rcpt_tos))}</td>"
        f'<td><a href="{request.url_for("catcher_message", message_id=m.id)}">'
        f"{escape(m.subject) or '(no subject)'}</a></td></tr>"
        for m in catcher.messages
    )
    if not rows:
        rows = '<tr><td colspan="4" class="muted">No message caught yet.</td></tr>'
    body = (
        f"<h1>Caught mail</h1><p class='muted'>SMTP on {escape(catcher.host)}:{catcher.port}; "
        "the newest first.</p><table><tr><th>Received (UTC)</th><th>From</th><th>To</th>"
        f"<th>Subject</th></tr>{rows}</table>"
    )
    return _page("Caught mail", body)


@router.get("/messages/{message_id}", name="catcher_message")
def message_page(request: Request, message_id: int) -> Response:
    message = _catcher(request).get(message_id)
    if message is None:
        return _page("Not found", "<p>No such message (it may have been dropped).</p>", 404)
    envelope = (
        f"<tr><th>Envelope from</th><td>{escape(message.mail_from)}</td></tr>"
        f"<tr><th>Envelope to</th><td>{escape(', '.join(message.rcpt_tos))}</td></tr>"
    )
    headers = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>"
        for name, value in message.headers
    )
    sections = [
        f'<p><a href="{request.url_for("catcher_list")}">← all messages</a> · '
        f'<a href="{request.url_for("catcher_raw", message_id=message.id)}">raw</a></p>',
        f"<h1>{escape(message.subject) or '(no subject)'}</h1>",
        f"<table>{envelope}{headers}</table>",
    ]
    if message.html is not None:
        sections.append(
            f'<h2>HTML part</h2><iframe sandbox srcdoc="{escape(message.html, quote=True)}">'
            "</iframe>"
        )
    if message.text is not None:
        sections.append(f"<h2>Text part</h2><pre>{escape(message.text)}</pre>")
    if message.attachments:
        items = "".join(
            f"<li>{escape(a.filename)} ({escape(a.content_type)}, {a.size} bytes)</li>"
            for a in message.attachments
        )
        sections.append(f"<h2>Attachments</h2><ul>{items}</ul>")
    return _page(message.subject or "(no subject)", "".join(sections))


@router.get("/messages/{message_id}/raw", name="catcher_raw")
def raw_message(request: Request, message_id: int) -> Response:
    message = _catcher(request).get(message_id)
    if message is None:
        return Response("no such message\n", status_code=404, media_type="text/plain")
    # text/plain, not message/rfc822: shown in the browser, never rendered
    return Response(message.raw, media_type="text/plain; charset=utf-8", headers=_SECURITY_HEADERS)


@router.get("/api/messages")
def list_json(request: Request) -> list[dict[str, Any]]:
    return [_summary(m) for m in _catcher(request).messages]


@router.get("/api/messages/{message_id}")
def message_json(request: Request, message_id: int) -> Response:
    message = _catcher(request).get(message_id)
    if message is None:
        return JSONResponse({"detail": f"no caught message {message_id}"}, status_code=404)
    return JSONResponse(
        {
            **_summary(message),
            "headers": [[name, value] for name, value in message.headers],
            "text": message.text,
            "html": message.html,
            "attachments": [
                {"filename": a.filename, "content_type": a.content_type, "size": a.size}
                for a in message.attachments
            ],
        }
    )


def _summary(message: CaughtMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "received_at": message.received_at.isoformat(),
        "mail_from": message.mail_from,
        "rcpt_tos": list(message.rcpt_tos),
        "from": message.sender,
        "to": message.to,
        "subject": message.subject,
        "size": len(message.raw),
    }


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f"</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status_code, headers=_SECURITY_HEADERS)
