"""Fuzz targets: one function per hostile-input surface, ``target(data: bytes) -> None``.

Each target feeds ``data`` to the real code and returns normally when msgcenter
accepts the input or refuses it the documented way; anything else raises, and
that is a finding. ``run.py`` imports this module under
``atheris.instrument_imports()`` so that msgcenter's code is coverage-instrumented;
``replay()`` runs a target over files without atheris (the test suite does that
with the committed corpus).

Surfaces (see README.md for adding one, e.g. the bounce parser of issue 10):

- ``soap``: a SOAP request body (first line ``#action <SOAPAction>`` optionally
  names the header) through the adapter's reader and dispatcher, down to the
  events stored (the real intake service and group committer, on a throwaway SQLite
  database); authentication is a stand-in that knows the session token ``fuzz/fuzz``.
  A clean refusal is a :class:`~msgcenter.errors.InvalidInputError` or an
  :class:`~msgcenter.errors.AuthenticationError` (a client SOAP Fault).
  Every event accepted must have a ctx the renderer can load.
- ``ctx``: an event's ctx (first line ``<x|j><template number>``: XML or JSON, and
  which of :data:`TEMPLATES` renders it). Loading may refuse with
  :class:`~msgcenter.render.RenderProblem`; rendering may only raise it.
- ``tracking``: a request target (``/t/c/…?u=…``, ``/t/o/…``) through the tracking
  routes. The answer is a pixel, a redirect to an http(s) URL this instance
  signed, or a 404 — never an error, never a redirect elsewhere.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI
from starlette.requests import Request

from msgcenter.errors import AuthenticationError, InvalidInputError
from msgcenter.events.model import Enqueued, EnqueueRequest
from msgcenter.intake.committer import GroupCommitter
from msgcenter.intake.in_force import PublishedRoutes
from msgcenter.intake.service import IntakeService
from msgcenter.intake.soap import SoapRouter
from msgcenter.operators import Operator, Right
from msgcenter.render import (
    MessageContent,
    RenderLimits,
    RenderProblem,
    compile_content,
    load_ctx,
)
from msgcenter.settings import IntakeSettings
from msgcenter.store.database import Database
from msgcenter.store.schema import upgrade
from msgcenter.tracking import LinkSigner
from msgcenter.web import tracking as tracking_routes

#: the loop every async target runs on (atheris calls a target millions of times)
_LOOP = asyncio.new_event_loop()


# -- soap --------------------------------------------------------------------------------------

OPERATOR = Operator(
    id=1,
    login="fuzz",
    rights=frozenset({Right.MC_PUSH}),
    correlation_idempotency=True,
)


class _Authenticator:
    """Knows one session token, ``fuzz/fuzz``; refuses any other as the real one does."""

    def session_token(self, token: str, client: Any, *, cache_only: bool = False) -> Operator:
        if token != "fuzz/fuzz":
            raise AuthenticationError("unknown session token")
        return OPERATOR

    def bearer(self, token: str, client: Any, *, cache_only: bool = False) -> Operator:
        raise AuthenticationError("unknown bearer token")

    def logon(self, login: str, password: str, client: Any) -> tuple[str, Operator, Any]:
        raise AuthenticationError("logons are not fuzzed")

    def logoff(self, token: str) -> None:
        return None


class _CheckingCommitter(GroupCommitter):
    """The real group committer, which first checks that the renderer can read every ctx
    intake accepted (else the event would only fail later, at sending)."""

    async def submit(self, request: EnqueueRequest) -> Enqueued:
        for event in request.events:
            load_ctx(event.ctx, event.ctx_format.value)
        return await super().submit(request)


def _intake() -> IntakeService:
    """The real intake service, committing into a throwaway SQLite database."""
    path = Path(tempfile.mkdtemp(prefix="msgcenter-fuzz-")) / "fuzz.db"
    atexit.register(shutil.rmtree, path.parent, True)
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    committer = _CheckingCommitter(database)
    committer.start()
    return IntakeService(committer, IntakeSettings(), PublishedRoutes(database))


_SOAP = SoapRouter(_intake(), _Authenticator())  # type: ignore[arg-type]


def _soap_request(body: bytes, action: str | None) -> Request:
    headers = [(b"content-type", b"text/xml; charset=utf-8")]
    if action is not None:
        headers.append((b"soapaction", action.encode("latin-1", "replace")))
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/nl/jsp/soaprouter.jsp",
        "raw_path": b"/nl/jsp/soaprouter.jsp",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
        "scheme": "http",
        "root_path": "",
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


async def _soap_call(request: Request) -> None:
    try:
        call = await _SOAP._read_call(request)
        await _SOAP._dispatch(call, request)
    except (InvalidInputError, AuthenticationError):
        pass  # a client fault: the documented refusal


def soap(data: bytes) -> None:
    """A SOAP body; ``#action <value>`` on the first line sends it as the SOAPAction header."""
    action = None
    if data.startswith(b"#action "):
        line, _, data = data.partition(b"\n")
        action = line[len(b"#action ") :].decode("utf-8", "replace").strip()
    _LOOP.run_until_complete(_soap_call(_soap_request(data, action)))


# -- ctx ---------------------------------------------------------------------------------------

#: templates that reach the ctx every way a template can (navigation, iteration, numbers,
#: comparisons, filters, legacy tags); the HTML part autoescapes
TEMPLATES = [
    "{{ ctx }}|{{ ctx.client.firstname }}|{{ ctx['order']['article'][1].sku }}|{{ ctx.a.b.c.d }}",
    "{% for a in ctx.order.article %}{{ loop.index }}:{{ a.sku }}x{{ a.qty }};{% endfor %}"
    "{{ ctx.order.article|length }}{{ ctx.order.article.sku|join(',') }}",
    "{% for k, v in ctx|items %}{{ k }}={{ v }}({{ v|length }});{% endfor %}",
    "{% if ctx.order.total > 100 %}big{% elif ctx.order.total %}{{ ctx.order.total * 2 }}"
    "{% endif %}{{ ctx.qty * ctx.price if ctx.qty and ctx.price }}",
    "{{ ctx.order.total|default('none') }} {{ ctx.n|int }} {{ ctx.n|float }} "
    "{{ ctx.n|round(2) }} {{ ctx.client.firstname|upper|truncate(5) }} {{ 'x' in ctx.note }}",
    "{{ ctx.a == ctx.b }}{{ ctx.a < ctx.b }}{{ ctx.a|string|length }}{{ ctx.a|first }}"
    "{{ ctx.a|last }}{{ ctx.a|sort|join }}{{ ctx.a|reverse|list|length }}",
    "<%= rtEvent.ctx.client.@firstname %> <%= escapeUrl(rtEvent.ctx.token) %>"
    '<%= escapeXmlStr(rtEvent.ctx["order-id"]) %>',
    "{% macro dump(v) %}[{{ v }}{% for k, c in v|items %} {{ k }}=({% for o in c %}"
    "{{ dump(o) }}{% endfor %}){% endfor %}]{% endmacro %}{{ dump(ctx) }}",
    "{{ ctx.n ** 3 }} {{ ctx.n // 7 }} {{ ctx.n % 7 }} {{ -ctx.n }} {{ ctx.n|abs }}",
]
_LIMITS = RenderLimits(max_output_bytes=64 * 1024, max_iterations=10_000, max_range=1_000)
_COMPILED = [
    compile_content(MessageContent(html=source, text=source), limits=_LIMITS)
    for source in TEMPLATES
]


def ctx(data: bytes) -> None:
    """``<x|j><template number>`` on the first line, then the ctx text."""
    header, _, body = data.partition(b"\n")
    ctx_format = "json" if header[:1] in (b"j", b"{") else "xml"
    digits = header[1:3].decode("ascii", "replace")
    number = int(digits) if digits.isdigit() else sum(header)
    text = body.decode("utf-8", "replace")
    try:
        value = load_ctx(text, ctx_format)
    except RenderProblem:
        return
    with contextlib.suppress(RenderProblem):
        _COMPILED[number % len(_COMPILED)].render({"email": "a@example.com"}, value)


# -- tracking ----------------------------------------------------------------------------------

#: the secret the corpus's signed URLs were made with (``README.md``)
TRACKING_SECRET = "fuzz-secret"
TRACKING_BASE = "https://t.example"
_SIGNER = LinkSigner(TRACKING_SECRET, TRACKING_BASE)


class _Recorder:
    def record(self, kind: Any, delivery_log_id: int, url: str | None, agent: str | None) -> None:
        return None


_TRACKING = FastAPI()
_TRACKING.include_router(tracking_routes.router)
_TRACKING.state.link_signer = _SIGNER
_TRACKING.state.tracking = _Recorder()


async def _get(raw: bytes) -> tuple[int, dict[bytes, bytes]]:
    raw_path, _, query = raw.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        # as uvicorn gives it: the raw path, and the path percent-decoded
        "path": unquote(raw_path.decode("ascii", "replace")),
        "raw_path": raw_path,
        "query_string": query,
        "headers": [(b"user-agent", b"fuzz")],
        "client": ("127.0.0.1", 40000),
        "server": ("t.example", 443),
        "scheme": "https",
        "root_path": "",
        "app": _TRACKING,
    }
    answer: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = dict(message.get("headers", []))

    await _TRACKING(scope, receive, send)
    return answer["status"], answer["headers"]


def tracking(data: bytes) -> None:
    """A request target, as the first line of a GET request would carry it."""
    raw = data.split(b"\n", 1)[0].strip()
    if not raw.startswith(b"/"):
        raw = b"/t/c/" + raw
    # HTTP servers refuse targets with bytes outside visible ASCII before routing
    raw = bytes(b for b in raw if 0x21 <= b <= 0x7E)
    status, headers = _LOOP.run_until_complete(_get(raw))
    if status == 302:
        location = headers[b"location"].decode("latin-1")
        if not location.lower().startswith(("http://", "https://")):
            raise AssertionError(f"redirect to {location!r}")
    elif status == 307:
        # Starlette's redirect to the path without its trailing slash: on this host only
        location = headers[b"location"].decode("latin-1")
        if not location.startswith(TRACKING_BASE + "/"):
            raise AssertionError(f"redirect off the tracking host: {location!r}")
    elif status not in (200, 404, 405):
        raise AssertionError(f"answer {status} to {raw!r}")


TARGETS: dict[str, Callable[[bytes], None]] = {"soap": soap, "ctx": ctx, "tracking": tracking}


def replay(name: str, paths: Iterable[Path]) -> int:
    """Run target ``name`` over the files ``paths`` (no fuzzing); how many ran."""
    target = TARGETS[name]
    count = 0
    for path in paths:
        target(path.read_bytes())
        count += 1
    return count
