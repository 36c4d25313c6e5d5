"""The REST adapter: ``/api/v1`` JSON intake, event reading and search, sessions (SPEC §3.2).

Errors are RFC 9457 problem+json bodies (see :mod:`msgcenter.web.problems`) whose
``field`` is a JSON Pointer into the request body.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal

import msgspec
import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from msgcenter.auth.authenticator import identify
from msgcenter.errors import (
    AuthenticationError,
    InvalidEventError,
    InvalidInputError,
    MsgcenterError,
)
from msgcenter.events.model import (
    LIST_KEY_SEPARATOR,
    CtxFormat,
    EventFilter,
    EventStatus,
    NewEvent,
    Queue,
    StoredEvent,
)
from msgcenter.events.validation import holds_nul, json_type, validate_event
from msgcenter.execution.events import EventQueries
from msgcenter.intake.body import read_body
from msgcenter.intake.service import IntakeService
from msgcenter.monitoring import metrics
from msgcenter.operators import Right
from msgcenter.web.access import (
    BASIC,
    BEARER,
    Caller,
    authenticator_of,
    client_of,
    operator_of,
    require,
)
from msgcenter.web.params import RowId, UtcMoment, newest_first_page
from msgcenter.web.plain_route import PlainRoute, invalid_parameter
from msgcenter.web.problems import status_of
from msgcenter.web.state import from_state

MAX_PAGE = 500


class EventIn(BaseModel):
    """An event pushed over REST (unknown keys are kept with the event)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="event type name", examples=["order_confirmation"])
    ctx: dict[str, Any] | None = Field(
        None, description="free-form personalisation data (none: an empty ctx)"
    )
    email: str | None = Field(None, description="required for the email channel")
    mobile_phone: str | None = Field(None, description="required for SMS; E.164 recommended")
    registration_token: str | None = Field(None, description="device token, required for push")
    mobile_app_uuid: str | None = None
    wished_channel: int | str | None = Field(
        None, description="0 email (default), 1 sms, 41 ios, 42 android, or the label"
    )
    email_format: int | None = Field(None, description="0 unknown, 1 text, 2 HTML")
    external_id: str | None = None
    origin: str | None = None
    language: str | None = None
    country: str | None = None
    correlation_id: str | None = None
    scheduled: datetime | None = Field(None, description="not processed before this time")


class PushResult(BaseModel):
    """Ids of the stored events: ``id`` for one event, ``ids`` for a list (in order);
    ``warnings`` (only when there are some) name the event types without a publication in
    force: such events are stored, but end ``not_taken_into_account`` if none arrives."""

    id: int | None = None
    ids: list[int] | None = None
    warnings: list[str] | None = None


class StatusChangeOut(BaseModel):
    status: str
    at: datetime
    reason: str | None = None


class EventOut(BaseModel):
    """An event as stored, with its timeline."""

    id: int
    queue: Literal["rt", "batch"]
    type: str
    status: str
    status_code: int
    email: str | None
    mobile_phone: str | None
    registration_token: str | None
    mobile_app_uuid: str | None
    wished_channel: int
    email_format: int
    external_id: str | None
    origin: str | None
    language: str | None
    country: str | None
    correlation_id: str | None
    scheduled: datetime | None
    ctx: Any = Field(description="a JSON object (REST intake) or the XML text (SOAP intake)")
    ctx_format: Literal["xml", "json"]
    extra: dict[str, Any]
    folder: str | None
    error_count: int
    process_requested_on: datetime
    created: datetime
    last_modified: datetime
    publication_id: int | None
    delivery_id: int | None
    delivery_log_id: int | None
    fallback_of: int | None = Field(
        None, description="the event whose failed message this one is the channel fallback of"
    )
    fallback_event: int | None = Field(
        None, description="the event queued again on another channel when this one failed"
    )
    history: list[StatusChangeOut] = []


class EventPage(BaseModel):
    """One page of a search; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[EventOut]
    next_cursor: str | None


class SessionIn(BaseModel):
    login: str
    password: str


class SessionOut(BaseModel):
    token: str
    expires: datetime
    login: str


PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: PROBLEM,
    401: PROBLEM,
    403: PROBLEM,
    413: PROBLEM,
    422: PROBLEM,
    503: PROBLEM,
}


Events = Annotated[EventQueries, Depends(from_state("events"))]


@contextmanager
def measured() -> Iterator[None]:
    """Count a push and time it in the intake metrics (as SOAP calls are), whatever its outcome."""
    started = time.perf_counter()
    outcome = "server_error"
    try:
        yield
        outcome = "ok"
    except MsgcenterError as exc:
        outcome = "client_error" if status_of(exc) < 500 else "server_error"
        raise
    finally:
        metrics.record_intake_request("rest", outcome, time.perf_counter() - started)


#: reading needs any operator (its folder bounds what it sees)
router = APIRouter(prefix="/api/v1", dependencies=[Depends(require())])
sessions_router = APIRouter(prefix="/api/v1")

#: the longest ``Idempotency-Key`` accepted (characters)
MAX_IDEMPOTENCY_KEY = 200
#: the parameters of a push, which it reads itself (see :func:`push_parameters`)
PUSH_PARAMETERS = [
    {
        "in": "path",
        "name": "queue",
        "required": True,
        "schema": {"$ref": "#/components/schemas/Queue"},
    },
    {
        "in": "header",
        "name": "idempotency-key",
        "required": False,
        "description": "A retry that repeats the request unchanged with the same key stores "
        "nothing again and gets the first answer's ids (200)",
        "schema": {"type": "string", "maxLength": MAX_IDEMPOTENCY_KEY, "title": "Idempotency-Key"},
    },
]


def add_push_route(app: FastAPI) -> None:
    """The push route, the hot one, on ``app``'s own router: FastAPI matches the routes of an
    included router one level deeper, which cost 5 % of a one-event push. Its authentication,
    right check and measurement are plain calls rather than dependencies, and it reads its
    own parameters (a :class:`PlainRoute`)."""
    app.router.add_api_route(
        "/api/v1/events/{queue}",
        push,
        methods=["POST"],
        route_class_override=PlainRoute,
        status_code=201,
        response_model=PushResult,
        responses={
            200: {"model": PushResult, "description": "replay of an idempotent push"},
            **ERRORS,
        },
        openapi_extra={
            "parameters": PUSH_PARAMETERS,
            "security": [{BASIC.scheme_name: []}, {BEARER.scheme_name: []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                EventIn.model_json_schema(),
                                {"type": "array", "items": EventIn.model_json_schema()},
                            ]
                        }
                    }
                },
            },
        },
        summary="Push one event or a list (all stored, or none)",
    )


async def push(request: Request) -> Response:
    """Store one event, or a list of events all together, in the queue the path names."""
    queue, idempotency_key = push_parameters(request)
    with measured():
        return await _push(queue, request, idempotency_key)


def push_parameters(request: Request) -> tuple[Queue, str | None]:
    """The queue a push names and its idempotency key, checked as :data:`PUSH_PARAMETERS` says."""
    try:
        queue = Queue(request.path_params["queue"])
    except ValueError:
        expected = " or ".join(repr(known.value) for known in Queue)
        raise invalid_parameter("path", "queue", f"Input should be {expected}") from None
    key = request.headers.get("idempotency-key")
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        raise invalid_parameter(
            "header",
            "idempotency-key",
            f"String should have at most {MAX_IDEMPOTENCY_KEY} characters",
        )
    return queue, key


async def _push(queue: Queue, request: Request, idempotency_key: str | None) -> Response:
    operator = await operator_of(authenticator_of(request), request)
    operator.require(Right.MC_PUSH)  # checked before the body is read
    intake: IntakeService = request.app.state.intake
    data = await read_body(request, intake.settings.max_request_bytes)
    body = _parse_json(data)
    events = _events_of(body, idempotency_key, intake.settings.max_event_bytes)
    if idempotency_key:
        for new, item in zip(events, body if isinstance(body, list) else [body], strict=True):
            new.fingerprint = _fingerprint(queue, item)
    enqueued = await intake.push(queue, events, operator)
    content: dict[str, Any] = (
        {"id": enqueued.ids[0]} if isinstance(body, dict) else {"ids": enqueued.ids}
    )
    warnings = await intake.warnings(queue, events, operator)
    if warnings:
        content["warnings"] = warnings
    # A replay (every event already stored under its key) answers 200 with the first ids.
    return Response(
        orjson.dumps(content),
        status_code=200 if enqueued.replay else 201,
        media_type="application/json",
    )


@router.get(
    "/events/{event_id}",
    response_model=EventOut,
    responses={**ERRORS, 404: PROBLEM},
    summary="One event with its timeline",
)
def read_event(event_id: RowId, operator: Caller, events: Events) -> Any:
    return _out(events.get(event_id, operator))


@router.get(
    "/events", response_model=EventPage, responses=ERRORS, summary="Search events, newest first"
)
def search_events(
    operator: Caller,
    events: Events,
    queue: Queue | None = None,
    type: str | None = None,  # noqa: A002 - the API's field name
    status: Annotated[str | None, Query(description="code or name, e.g. 2 or sent")] = None,
    email: str | None = None,
    external_id: str | None = None,
    created_from: UtcMoment = None,
    created_to: UtcMoment = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> Any:
    criteria = EventFilter(
        queue=queue,
        type=type,
        status=_status(status) if status else None,
        email=email,
        external_id=external_id,
        created_from=created_from,
        created_to=created_to,
    )
    page, next_cursor = newest_first_page(
        lambda before_id, n: events.search(criteria, operator, before_id=before_id, limit=n),
        cursor,
        limit,
    )
    return {"items": [_out(e) for e in page], "next_cursor": next_cursor}


@sessions_router.post(
    "/sessions", status_code=201, response_model=SessionOut, responses=ERRORS, summary="Log on"
)
async def logon(credentials: SessionIn, request: Request) -> Any:
    token, operator, expires = await asyncio.to_thread(
        authenticator_of(request).logon, credentials.login, credentials.password, client_of(request)
    )
    return {"token": token, "expires": expires, "login": operator.login}


@sessions_router.delete(
    "/sessions/current",
    status_code=204,
    responses=ERRORS,
    summary="Log off",
    dependencies=[Security(BEARER)],
)
async def logoff(request: Request) -> Response:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("log off needs the session as a Bearer token")
    auth = authenticator_of(request)
    await identify(partial(auth.bearer, token.strip(), client_of(request)))
    await asyncio.to_thread(auth.logoff, token.strip())
    return Response(status_code=204)


def _events_of(body: Any, idempotency_key: str | None, max_event_bytes: int) -> list[NewEvent]:
    """The events of a push: one object, or a non-empty list (element *i* keyed ``KEY<US>i``)."""
    if isinstance(body, dict):
        return [_event(body, None, idempotency_key, max_event_bytes)]
    if isinstance(body, list):
        if not body:
            raise InvalidInputError("no events", detail="the event list is empty")
        return [
            _event(
                item,
                i,
                f"{idempotency_key}{LIST_KEY_SEPARATOR}{i}" if idempotency_key else None,
                max_event_bytes,
            )
            for i, item in enumerate(body)
        ]
    raise InvalidInputError(
        "body must be an event object or a list of them",
        detail=f"the body is a JSON {json_type(body)}",
    )


def _fingerprint(queue: Queue, item: Any) -> str:
    """A digest of one pushed event as parsed (key order and spacing aside), to tell a replay
    from another event under the same idempotency key. Per event, not per request: a list
    key ``K`` names its events ``K<US>i`` by position, so a run that resumes a list cut short
    sends it whole again and only its new events are stored."""
    canonical = _json([queue.value, item], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _parse_json(data: bytes) -> Any:
    """The body, parsed; the numbers of each ``ctx`` keep the text the client wrote."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(
            "body is not valid JSON",
            detail=f"JSON parse error at line {exc.lineno}, column {exc.colno}: {exc.msg}",
        ) from None
    if _INEXACT_NUMBER.search(data):
        _keep_ctx_numbers(data, body)
    return body


#: a number orjson would not write back as it was written: a fraction or an exponent
#: (19.90 would be stored as 19.9), or an integer beyond 64 bits (made a float)
_INEXACT_NUMBER = re.compile(rb"[0-9][.eE]|[0-9]{19}")
#: parses again with every fraction kept as the text the client wrote (in C: the standard
#: parser's Python call per number cost twice orjson's whole parse)
_EXACT_DECODER = msgspec.json.Decoder(float_hook=orjson.Fragment)


def _keep_ctx_numbers(data: bytes, body: Any) -> None:
    """Put into ``body`` the ctx of each event parsed again with its numbers as written (as an
    XML ctx keeps them), for templates to show 19.90 and not 19.9; an integer beyond 64 bits
    is an int here, written back as text by :func:`_dumps`."""
    try:
        exact = _EXACT_DECODER.decode(data)
    except msgspec.DecodeError:
        return  # orjson took it; what this parser cannot is refused further on
    pairs = zip(body, exact, strict=True) if isinstance(body, list) else [(body, exact)]
    for parsed, written in pairs:
        if isinstance(parsed, dict) and isinstance(written, dict) and "ctx" in written:
            parsed["ctx"] = written["ctx"]


def _event(item: Any, index: int | None, key: str | None, max_bytes: int) -> NewEvent:
    try:
        if not isinstance(item, dict):
            raise InvalidEventError("", f"an event must be a JSON object, not {json_type(item)}")
        ctx = item.get("ctx")
        if ctx is not None and not isinstance(ctx, dict):
            raise InvalidEventError("ctx", f"must be a JSON object, not {json_type(ctx)}")
        ctx_json = _dumps(ctx, "ctx") if ctx is not None else b""
        if b"\\u0000" in ctx_json and holds_nul(ctx):
            raise InvalidEventError("ctx", "contains a NUL character")
        fields = {k: v for k, v in item.items() if k != "ctx"}
        # UTF-8 bytes of the event as JSON: the limit is in bytes, not characters
        size = len(ctx_json) + len(_dumps(fields, ""))
        if size > max_bytes:
            raise InvalidEventError(
                "", f"the event is {size} bytes; at most {max_bytes} are accepted"
            )
        ctx_text = ctx_json.decode() if ctx is not None else None
        return validate_event(fields, ctx_text, CtxFormat.JSON, idempotency_key=key)
    except InvalidEventError as exc:
        raise (exc.at_position(index + 1) if index is not None else exc) from None


def _dumps(value: Any, field: str) -> bytes:
    """``value`` as JSON; the parser accepts nesting (up to 1,024 levels) the writer refuses
    (over 254), so a too deeply nested value is the caller's error."""
    try:
        return _json(value)
    except orjson.JSONEncodeError as exc:
        reason = "nested deeper than 254 levels" if "ecursion" in str(exc) else str(exc)
        raise InvalidEventError(field, f"cannot be stored: {reason}") from None


def _json(value: Any, option: int | None = None) -> bytes:
    """``value`` as JSON, integers beyond 64 bits included (written as they were parsed)."""
    try:
        return orjson.dumps(value, option=option)
    except orjson.JSONEncodeError as exc:
        if str(exc) == "Integer exceeds 64-bit range" and _long_integers_as_text(value):
            return orjson.dumps(value, option=option)
        raise


def _long_integers_as_text(value: Any) -> bool:
    """Make the integers beyond 64 bits in ``value`` (nested dicts and lists, changed in place)
    JSON fragments of their text, which orjson writes as they are; whether there were any."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    found = False
    for key, item in list(items):
        if isinstance(item, int) and not isinstance(item, bool) and not -(2**63) <= item < 2**64:
            value[key] = orjson.Fragment(str(item))
            found = True
        elif isinstance(item, dict | list):
            found = _long_integers_as_text(item) or found
    return found


def _status(text: str) -> EventStatus:
    try:
        return EventStatus.parse(text)
    except (KeyError, ValueError):
        names = ", ".join(s.label for s in EventStatus)
        raise InvalidInputError(
            f"unknown status {text!r}", detail=f"known statuses: {names}"
        ) from None


def _out(stored: StoredEvent) -> dict[str, Any]:
    out = {name: getattr(stored, name) for name in StoredEvent.__slots__ if name != "history"}
    out["queue"] = stored.queue.value
    out["status"] = stored.status.label
    out["status_code"] = int(stored.status)
    out["ctx"] = orjson.loads(stored.ctx) if stored.ctx_format == CtxFormat.JSON else stored.ctx
    out["history"] = [
        {"status": change.status.label, "at": change.at, "reason": change.reason}
        for change in stored.history
    ]
    return out
