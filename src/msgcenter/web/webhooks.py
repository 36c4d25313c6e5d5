"""Delivery-status webhook subscriptions over the execution instance's API (``mc_admin``):
create one (its secret is shown once), list, read, change, delete, rotate its secret,
replay its messages, and list its recent messages (SPEC §3.7; docs/channels.md "Webhooks").

Bodies are read under ``webhooks.max_api_body_bytes`` before they are parsed, so an
oversized body is refused (413) without being held whole.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from msgcenter.designs import FOLDER
from msgcenter.execution.webhooks import MAX_LISTED, WebhookAdmin, WithSecret
from msgcenter.intake.body import read_body
from msgcenter.operators import Right
from msgcenter.web.access import Admin, require
from msgcenter.web.params import SmallRowId, UtcMoment
from msgcenter.web.problems import API_ERRORS, documented
from msgcenter.web.state import from_state
from msgcenter.webhooks import MAX_URL_CHARS, OutboxMessage, OutboxStatus, Subscription, WebhookType

Webhooks = Annotated[WebhookAdmin, Depends(from_state("webhooks"))]
router = APIRouter(
    prefix="/api/v1/webhooks",
    tags=["webhooks"],
    dependencies=[Depends(require(Right.MC_ADMIN))],
    responses=API_ERRORS,
)
Model = TypeVar("Model", bound=BaseModel)


class SubscriptionIn(BaseModel):
    """A new subscription."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=MAX_URL_CHARS, description="where messages are posted: http(s), a public host"
    )
    types: list[WebhookType] = Field(
        min_length=1, max_length=len(WebhookType), description="the outcomes it receives"
    )
    folder: str | None = Field(
        None,
        pattern=FOLDER,
        description="the folder whose events it receives; none: every folder (an operator "
        "restricted to a folder always subscribes its own)",
    )


class SubscriptionChange(BaseModel):
    """What to change in a subscription (members left out stay as they are)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=MAX_URL_CHARS)
    types: list[WebhookType] | None = Field(None, min_length=1, max_length=len(WebhookType))
    active: bool | None = Field(None, description="enabling clears its failures")


class ReplayIn(BaseModel):
    """Which messages to post again: one by its id, or those created in [since, until)."""

    model_config = ConfigDict(extra="forbid")

    message_id: str | None = Field(None, max_length=64, description="a webhook-id (msg_…)")
    since: UtcMoment = None
    until: UtcMoment = None


class SubscriptionOut(BaseModel):
    """A subscription; its secret is never shown again."""

    id: int
    folder: str | None
    url: str
    types: list[str]
    active: bool
    disabled_reason: str | None
    failing_since: datetime | None
    previous_secret_until: datetime | None = Field(
        description="until when the secret before the last rotation still signs"
    )
    created: datetime
    updated: datetime


class SubscriptionWithSecret(SubscriptionOut):
    """A subscription and its secret (``whsec_…``), shown this once."""

    secret: str


class ReplayOut(BaseModel):
    """How many messages were queued again."""

    replayed: int


class MessageOut(BaseModel):
    """One webhook message of a subscription."""

    message_id: str
    type: str
    status: OutboxStatus
    attempts: int
    due: datetime
    created: datetime
    delivered_at: datetime | None
    last_error: str | None


def _body_of(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


async def _parse(request: Request, webhooks: WebhookAdmin, model: type[Model]) -> Model:
    data = await read_body(request, webhooks.settings.max_api_body_bytes)
    try:
        return model.model_validate_json(data or b"null")
    except ValidationError as exc:
        # reported as FastAPI reports a body it validated: 422, with the field's JSON pointer
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


@router.post(
    "",
    status_code=201,
    response_model=SubscriptionWithSecret,
    summary="Subscribe a URL to outcomes; its signing secret is shown this once",
    responses=documented(413),
    openapi_extra=_body_of(SubscriptionIn),
)
async def subscribe(request: Request, operator: Admin, webhooks: Webhooks) -> Any:
    new = await _parse(request, webhooks, SubscriptionIn)
    created = await webhooks.create(operator, new.url, frozenset(new.types), new.folder)
    return _with_secret(created)


@router.get("", response_model=list[SubscriptionOut], summary="Webhook subscriptions")
def list_subscriptions(operator: Admin, webhooks: Webhooks) -> Any:
    return [_out(s) for s in webhooks.subscriptions(operator)]


@router.get(
    "/{subscription_id}",
    response_model=SubscriptionOut,
    summary="One webhook subscription",
    responses=documented(404),
)
def read_subscription(subscription_id: SmallRowId, operator: Admin, webhooks: Webhooks) -> Any:
    return _out(webhooks.get(operator, subscription_id))


@router.patch(
    "/{subscription_id}",
    response_model=SubscriptionOut,
    summary="Change a subscription's URL or types, enable or disable it",
    responses=documented(404, 413),
    openapi_extra=_body_of(SubscriptionChange),
)
async def change_subscription(
    subscription_id: SmallRowId, request: Request, operator: Admin, webhooks: Webhooks
) -> Any:
    change = await _parse(request, webhooks, SubscriptionChange)
    changed = await webhooks.change(
        operator,
        subscription_id,
        url=change.url,
        types=frozenset(change.types) if change.types is not None else None,
        active=change.active,
    )
    return _out(changed)


@router.delete(
    "/{subscription_id}",
    status_code=204,
    summary="Delete a subscription and its messages",
    responses=documented(404),
)
def delete_subscription(subscription_id: SmallRowId, operator: Admin, webhooks: Webhooks) -> None:
    webhooks.delete(operator, subscription_id)


@router.post(
    "/{subscription_id}/secret",
    response_model=SubscriptionWithSecret,
    summary="A new signing secret; the previous one still signs for a while "
    "(webhooks.secret_overlap_seconds)",
    responses=documented(404),
)
def rotate_secret(subscription_id: SmallRowId, operator: Admin, webhooks: Webhooks) -> Any:
    return _with_secret(webhooks.rotate_secret(operator, subscription_id))


@router.post(
    "/{subscription_id}/replay",
    response_model=ReplayOut,
    summary="Post again one message (message_id) or those created in [since, until), "
    "with their webhook-id",
    responses=documented(404, 409, 413),
    openapi_extra=_body_of(ReplayIn),
)
async def replay(
    subscription_id: SmallRowId, request: Request, operator: Admin, webhooks: Webhooks
) -> Any:
    wanted = await _parse(request, webhooks, ReplayIn)
    # the body is read on the event loop; the database is written in a worker thread
    count = await asyncio.to_thread(
        webhooks.replay,
        operator,
        subscription_id,
        message_id=wanted.message_id,
        since=wanted.since,
        until=wanted.until,
    )
    return ReplayOut(replayed=count)


@router.get(
    "/{subscription_id}/messages",
    response_model=list[MessageOut],
    summary="A subscription's recent messages, newest first, with their status",
    responses=documented(404),
)
def list_messages(
    subscription_id: SmallRowId,
    operator: Admin,
    webhooks: Webhooks,
    limit: Annotated[int, Query(ge=1, le=MAX_LISTED)] = 100,
    status: OutboxStatus | None = None,
) -> Any:
    return [_message(m) for m in webhooks.messages(operator, subscription_id, limit, status)]


def _out(found: Subscription) -> SubscriptionOut:
    return SubscriptionOut(
        id=found.id,
        folder=found.folder,
        url=found.url,
        types=sorted(t.value for t in found.types),
        active=found.active,
        disabled_reason=found.disabled_reason,
        failing_since=found.failing_since,
        previous_secret_until=found.previous_secret_until,
        created=found.created,
        updated=found.updated,
    )


def _with_secret(found: WithSecret) -> SubscriptionWithSecret:
    return SubscriptionWithSecret(**_out(found.subscription).model_dump(), secret=found.secret)


def _message(found: OutboxMessage) -> MessageOut:
    return MessageOut(
        message_id=found.message_id,
        type=found.type.value,
        status=found.status,
        attempts=found.attempts,
        due=found.due,
        created=found.created,
        delivered_at=found.delivered_at,
        last_error=found.last_error,
    )
