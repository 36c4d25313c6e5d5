"""RFC 9457 problem+json responses for :mod:`msgcenter.errors` raised under ``/api``."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from msgcenter.errors import (
    AuthenticationError,
    ConflictError,
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
    (InvalidInputError, 400),
    (StoreUnavailableError, 503),
    (UpstreamError, 502),
]
MEDIA_TYPE = "application/problem+json"


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
        if status >= 500:
            log.warning("api error", action="api.error", path=request.url.path, detail=exc.detail)
        return problem(status, exc.code, exc.message, exc.detail, **extra)

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

    app.add_exception_handler(MsgcenterError, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
