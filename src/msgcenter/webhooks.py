"""Delivery-status webhooks (SPEC §3.7): what a subscription receives and how it is signed.

Outcomes of events (sent, delivered, bounced, opened …) are posted, per folder, to
the URLs operators subscribe. Each message is signed to the Standard Webhooks
specification (https://www.standardwebhooks.com/): the headers ``webhook-id``
(the outbox message's id, the same on every retry and replay, so that a
receiver can drop duplicates), ``webhook-timestamp`` (the attempt's time, in
seconds) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256>``, one per valid
secret, space-separated, while a rotated secret overlaps its successor).

This module is pure: no I/O. The store turns rows into :class:`Outcome` values;
the workflows decide who gets them and when.
"""

from __future__ import annotations

import base64
import enum
import secrets
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from standardwebhooks import Webhook

from msgcenter.errors import InvalidInputError

#: Standard Webhooks: a secret is ``whsec_`` and the base64 of 24 to 64 random bytes
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
#: a message id is ``msg_`` and 26 random characters (Standard Webhooks: any unique string)
MESSAGE_ID_PREFIX = "msg_"
#: the longest target URL accepted
MAX_URL_CHARS = 2_048


class WebhookType(enum.StrEnum):
    """What happened to an event or its message: a subscription names the ones it wants."""

    #: accepted by the next hop (event status sent)
    SENT = "message.sent"
    #: confirmed delivered to the recipient (a delivery receipt: delivery log delivered)
    DELIVERED = "message.delivered"
    #: the send failed for good, now or later (event status delivery_failed)
    DELIVERY_FAILED = "message.delivery_failed"
    #: deliberately not sent: quarantine, invalid address, unsubscription (event status ignored)
    IGNORED = "message.ignored"
    #: no published template for its type and channel (event status not_taken_into_account)
    NOT_TAKEN_INTO_ACCOUNT = "message.not_taken_into_account"
    #: the tries or the validity period were used up (event status expired)
    EXPIRED = "message.expired"
    #: a bounce report (hard or soft) came back for the message
    BOUNCED = "message.bounced"
    #: the recipient reported the message as spam (a feedback report)
    COMPLAINED = "message.complained"
    #: a tracked message was opened
    OPENED = "message.opened"
    #: a tracked link of the message was clicked
    CLICKED = "message.clicked"


class OutboxStatus(enum.StrEnum):
    """Where a webhook message stands in the outbox."""

    #: waiting for its (next) attempt at ``due``
    PENDING = "pending"
    #: with a sender until ``due`` (a crashed sender's messages are taken again after it)
    SENDING = "sending"
    #: the receiver answered 2xx
    DELIVERED = "delivered"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One outcome of one event, as read from its source table, ready to be posted."""

    type: WebhookType
    #: the folder of the event (None: no folder)
    folder: str | None
    at: datetime
    #: the ``data`` member of the payload (see :func:`payload`)
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Subscription:
    """Where one folder's outcomes of some types are posted."""

    id: int
    #: None: every folder (only an operator without a folder may create such a subscription)
    folder: str | None
    url: str
    types: frozenset[WebhookType]
    active: bool
    disabled_reason: str | None
    #: since when every attempt failed (None: the last attempt succeeded, or none was made)
    failing_since: datetime | None
    created: datetime
    updated: datetime
    #: the secrets messages are signed with now: the current one, and the previous one
    #: while its overlap lasts (never returned by the API after creation or rotation)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    #: until when the previous secret still signs (None: no previous secret in force)
    previous_secret_until: datetime | None = None

    def wants(self, outcome: Outcome) -> bool:
        """Whether this subscription receives ``outcome``."""
        return (
            self.active
            and outcome.type in self.types
            and (self.folder is None or self.folder == outcome.folder)
        )


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One webhook message of one subscription."""

    id: int
    subscription_id: int
    message_id: str
    type: WebhookType
    #: the JSON body, exactly as posted and signed
    payload: bytes
    status: OutboxStatus
    attempts: int
    due: datetime
    created: datetime
    delivered_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """A message claimed for posting, with where to post it and what to sign it with."""

    message: OutboxMessage
    url: str
    secrets: tuple[str, ...] = field(repr=False)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How an attempt ended: ``error`` None means the receiver answered 2xx."""

    outbox_id: int
    subscription_id: int
    attempts: int
    error: str | None = None


def parse_types(names: list[str] | str) -> frozenset[WebhookType]:
    """Webhook types from their names (a list, or one comma-separated string); ``sent`` is
    taken for ``message.sent``. At least one; an unknown name is refused, naming the known."""
    if isinstance(names, str):
        names = [n for n in (part.strip() for part in names.split(",")) if n]
    found = set()
    for name in names:
        full = name if name.startswith("message.") else f"message.{name}"
        try:
            found.add(WebhookType(full))
        except ValueError:
            known = ", ".join(t.value for t in WebhookType)
            raise InvalidInputError(
                f"unknown webhook type {name!r}",
                detail=f"unknown webhook type {name!r}; known: {known}",
            ) from None
    if not found:
        raise InvalidInputError("no webhook type", detail="name at least one webhook type")
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class Target:
    """A webhook URL, checked for syntax: http(s), a host, no credentials."""

    url: str
    host: str
    port: int


def parse_url(url: str) -> Target:
    """Check a webhook URL's syntax (:class:`InvalidInputError` naming what is wrong); whether
    its host may be reached is checked apart, by resolving it."""
    if len(url) > MAX_URL_CHARS:
        raise InvalidInputError(
            "webhook URL too long", detail=f"a webhook URL has at most {MAX_URL_CHARS} characters"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInputError("invalid webhook URL", detail=f"{url!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInputError(
            "invalid webhook URL",
            detail=f"scheme {parts.scheme or '(none)'!r} is not allowed: http or https only",
        )
    if not parts.hostname:
        raise InvalidInputError("invalid webhook URL", detail=f"{url!r} names no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInputError(
            "invalid webhook URL",
            detail="credentials in a webhook URL are refused: the secret signs",
        )
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidInputError("invalid webhook URL", detail="a webhook URL has no blanks")
    return Target(url, parts.hostname, port or (443 if parts.scheme == "https" else 80))


def new_secret() -> str:
    """A new signing secret, as Standard Webhooks writes them (``whsec_`` + base64)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def new_message_id() -> str:
    """A new, unique webhook message id (``webhook-id``)."""
    return MESSAGE_ID_PREFIX + secrets.token_hex(13)


def payload(outcome: Outcome) -> bytes:
    """The JSON body of ``outcome``: ``{"type", "timestamp", "data"}`` (Standard Webhooks'
    recommended shape); ``timestamp`` is when the outcome happened, ISO 8601 in UTC."""
    return orjson.dumps(
        {
            "type": outcome.type.value,
            "timestamp": outcome.at.isoformat().replace("+00:00", "Z"),
            "data": outcome.data,
        }
    )


def signature_headers(
    message_id: str, body: bytes, signing_secrets: tuple[str, ...], at: datetime
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed with every secret in force."""
    signatures = " ".join(Webhook(s).sign(message_id, at, body) for s in signing_secrets)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
    }
