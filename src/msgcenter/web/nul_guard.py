"""Refusing NUL characters at the door, the same way on both stores.

PostgreSQL cannot store a NUL in text and SQLite stores it silently; neither is a
legitimate value anywhere. A path, query parameter or JSON body under ``/api/``
holding one is refused before any route runs, naming where: 400 with the
parameter, or 422 with the JSON Pointer of the first string that holds it. The
intake routes (the REST push and the SOAP router) stream and check their bodies
themselves, and are only checked for their path and query here.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from msgcenter.web.problems import problem

#: the routes that read their bodies themselves, under a size limit
STREAMED = (("POST", "/api/v1/events/"), ("POST", "/nl/jsp/soaprouter.jsp"))


class NulGuard:
    """ASGI middleware: no NUL character reaches a route (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = _nul_in_target(scope)
        if where is not None:
            refusal = problem(
                400,
                "invalid-request",
                "invalid request",
                f"{where}: contains a NUL character",
                field=where,
            )
            await refusal(scope, receive, send)
            return
        if not _checks_body(scope):
            await self.app(scope, receive, send)
            return
        messages, body = await _read(receive)
        pointer = _nul_in_json(body) if b"\\u0000" in body or b"\x00" in body else None
        if pointer is not None:
            refusal = problem(
                422,
                "invalid-request",
                "invalid request",
                f"{pointer}: contains a NUL character",
                field=pointer,
            )
            await refusal(scope, receive, send)
            return
        await self.app(scope, _replay(messages, receive), send)


def _nul_in_target(scope: Scope) -> str | None:
    if "\x00" in scope["path"]:
        return "path"
    query = scope.get("query_string", b"").decode("latin-1")
    if "%00" not in query and "\x00" not in query:
        return None
    for name, value in parse_qsl(query, keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return f"query.{name.replace(chr(0), '')}"
    return None


def _checks_body(scope: Scope) -> bool:
    path: str = scope["path"]
    if not path.startswith("/api/") or scope["method"] in ("GET", "HEAD", "OPTIONS"):
        return False
    if any(scope["method"] == method and path.startswith(prefix) for method, prefix in STREAMED):
        return False
    content_type: bytes = dict(scope["headers"]).get(b"content-type", b"")
    return content_type.split(b";")[0].strip().lower().endswith(b"json")


async def _read(receive: Receive) -> tuple[list[Message], bytes]:
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    return messages, b"".join(m.get("body", b"") for m in messages)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def _nul_in_json(body: bytes) -> str | None:
    """The JSON Pointer (RFC 6901) of the first key or string holding a NUL; None when there
    is none, or the body is no JSON (the route says so)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return _find(document, "")


def _find(value: Any, pointer: str) -> str | None:
    if isinstance(value, str):
        return pointer if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}"
            if "\x00" in key:
                return here.replace("\x00", "\\u0000")
            found = _find(item, here)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _find(item, f"{pointer}/{index}")
            if found is not None:
                return found
    return None
