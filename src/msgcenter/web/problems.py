"""RFC 9457 problem+json responses for :mod:`msgcenter.errors` raised under ``/api``."""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from msgcenter.errors import (
    AuthenticationError,
    ConflictError,
    IdempotencyKeyReusedError,
    InvalidEventError,
    InvalidInputError,
    MsgcenterError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    StoreUnavailableError,
    TooManyFailedLoginsError,
    UpstreamError,
)

log = structlog.get_logger(__name__)

#: most specific first
STATUSES: list[tuple[type[MsgcenterError], int]] = [
    (TooManyFailedLoginsError, 429),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (PayloadTooLargeError, 413),
    (InvalidEventError, 422),
    (IdempotencyKeyReusedError, 422),
    (InvalidInputError, 400),
    (StoreUnavailableError, 503),
    (UpstreamError, 502),
]
MEDIA_TYPE = "application/problem+json"


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route that may answer problem+json with ``statuses``."""
    return {status: {"content": {MEDIA_TYPE: {}}} for status in statuses}


#: what any authenticated API route may answer (declared on its router): a malformed query
#: or path parameter (400, FastAPI's validation of a body is 422), no or wrong credentials
#: (401), a missing right or an untrusted network (403), the database out of reach (503)
API_ERRORS = documented(400, 401, 403, 422, 503)
#: what a client is told while the database is unavailable: the driver's message (with the
#: database's host and port) is for the log only
STORE_UNAVAILABLE = "the service cannot store or read data right now; retry later"
#: seconds a client is asked to wait before retrying (``Retry-After``) during an outage
STORE_RETRY_AFTER_SECONDS = 5
#: refused requests of one kind are logged at most this often (seconds), with their count
LOG_EVERY_SECONDS = 60.0


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> Response:
    """A problem+json response."""
    body = {
        "type": f"urn:msgcenter:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="msgcenter", Bearer'
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return Response(orjson.dumps(body), status_code=status, media_type=MEDIA_TYPE, headers=headers)


class ErrorLog:
    """Server-side refusals, logged once when they start and then at most every
    ``LOG_EVERY_SECONDS`` per kind with how many there were (an outage is not a log flood)."""

    def __init__(self) -> None:
        self._logged: dict[str, tuple[float, int]] = {}

    def note(self, code: str, path: str, detail: str) -> None:
        """One request refused with error ``code``."""
        now = time.monotonic()
        last, suppressed = self._logged.get(code, (float("-inf"), 0))
        if now - last < LOG_EVERY_SECONDS:
            self._logged[code] = (last, suppressed + 1)
            return
        self._logged[code] = (now, 0)
        log.warning(
            "api error",
            action="api.error",
            code=code,
            path=path,
            detail=detail,
            **({"unlogged_since_last": suppressed} if suppressed else {}),
        )


server_errors = ErrorLog()


def status_of(exc: MsgcenterError) -> int:
    """The HTTP status of a msgcenter error."""
    return next((s for kind, s in STATUSES if isinstance(exc, kind)), 500)


def install(app: FastAPI) -> None:
    """Render msgcenter errors and FastAPI's own validation errors as problem+json."""

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MsgcenterError)
        status = status_of(exc)
        extra: dict[str, Any] = {}
        if isinstance(exc, InvalidEventError):
            # RFC 6901: "" is the whole body; "/" would be a member named ""
            pointer = f"/{exc.position - 1}" if exc.position is not None else ""
            extra["field"] = f"{pointer}/{exc.field}" if exc.field else pointer
            extra["position"] = exc.position
        if isinstance(exc, TooManyFailedLoginsError):
            extra["retry_after"] = exc.retry_after
        detail = exc.detail
        if isinstance(exc, StoreUnavailableError):
            extra["retry_after"] = STORE_RETRY_AFTER_SECONDS
            detail = STORE_UNAVAILABLE
        if status >= 500:
            server_errors.note(exc.code, request.url.path, exc.detail)
        return problem(status, exc.code, exc.message, detail, **extra)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0]
        location = [str(part) for part in first.get("loc", ())]
        field = "/" + "/".join(location[1:]) if location[:1] == ["body"] else ".".join(location)
        return problem(
            422 if location[:1] == ["body"] else 400,
            "invalid-request",
            "invalid request",
            f"{field}: {first.get('msg')}",
            field=field,
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        # FastAPI's and Starlette's own refusals (a body that is not even text, an unknown
        # path, a method not allowed) are problem+json too under /api, as documented there
        assert isinstance(exc, StarletteHTTPException)
        if not request.url.path.startswith("/api/"):
            return await http_exception_handler(request, exc)
        phrase = HTTPStatus(exc.status_code).phrase
        answer = problem(
            exc.status_code, phrase.lower().replace(" ", "-"), phrase.lower(), str(exc.detail)
        )
        answer.headers.update(exc.headers or {})
        return answer

    app.add_exception_handler(MsgcenterError, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
