"""What an event is: queues, channels, formats, statuses, and a validated new event (SPEC §3.1, §3.3)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Queue(enum.StrEnum):
    """The two queues an information system chooses between."""

    RT = "rt"
    BATCH = "batch"

    @property
    def soap_element(self) -> str:
        """Name of the event element in SOAP documents (``rtEvent`` / ``batchEvent``)."""
        return "rtEvent" if self is Queue.RT else "batchEvent"


#: SOAP attribute names of the model product -> the field names of REST and the validator
SOAP_ATTRIBUTE_FIELDS = {
    "mobilePhone": "mobile_phone",
    "registrationToken": "registration_token",
    "wishedChannel": "wished_channel",
    "emailFormat": "email_format",
    "externalId": "external_id",
    "correlationId": "correlation_id",
}


class Channel(enum.IntEnum):
    """Wished channel codes of the model product."""

    EMAIL = 0
    SMS = 1
    IOS = 41
    ANDROID = 42

    @property
    def label(self) -> str:
        return self.name.lower()


#: labels accepted for ``wishedChannel`` besides the numeric codes
CHANNEL_LABELS: dict[str, Channel] = {
    "email": Channel.EMAIL,
    "sms": Channel.SMS,
    "mobile": Channel.SMS,
    "ios": Channel.IOS,
    "android": Channel.ANDROID,
}


class EmailFormat(enum.IntEnum):
    """``emailFormat``: which parts an email carries."""

    UNKNOWN = 0
    TEXT = 1
    HTML = 2


class EventStatus(enum.IntEnum):
    """Event statuses (SPEC §3.3)."""

    PENDING = 0
    PENDING_DELIVERY = 1
    SENT = 2
    IGNORED = 3
    DELIVERY_FAILED = 4
    NOT_TAKEN_INTO_ACCOUNT = 5
    EXPIRED = 6

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> EventStatus:
        """A status from its code (``"2"``) or its name (``"sent"``)."""
        if value.isdigit():
            return cls(int(value))
        return cls[value.upper()]


class CtxFormat(enum.StrEnum):
    """How an event's ``ctx`` was received, and so how it is stored."""

    XML = "xml"
    JSON = "json"


@dataclass(slots=True)
class NewEvent:
    """A validated event ready to be stored. ``ctx`` is kept as received (XML or JSON text)."""

    type: str
    ctx: str
    ctx_format: CtxFormat
    wished_channel: Channel = Channel.EMAIL
    email_format: EmailFormat = EmailFormat.UNKNOWN
    email: str | None = None
    mobile_phone: str | None = None
    registration_token: str | None = None
    mobile_app_uuid: str | None = None
    external_id: str | None = None
    origin: str | None = None
    language: str | None = None
    country: str | None = None
    correlation_id: str | None = None
    scheduled: datetime | None = None
    #: attributes the caller sent that msgcenter does not know; kept, not rejected
    extra: dict[str, Any] = field(default_factory=dict)
    #: the caller's idempotency key (REST header, or SOAP correlationId when enabled)
    idempotency_key: str | None = None
    #: a digest of the event as its request carried it, beside its idempotency key (REST):
    #: the key reused for another event is refused
    fingerprint: str | None = None


#: between a list push's idempotency key and an element's position (``KEY<US>i``): a control
#: character no HTTP header carries, so no single push's key can be the same
LIST_KEY_SEPARATOR = "\x1f"


#: the event fields a template sees as ``event`` (besides ``ctx``)
TEMPLATE_EVENT_FIELDS = (
    "id",
    "type",
    "email",
    "mobile_phone",
    "registration_token",
    "mobile_app_uuid",
    "wished_channel",
    "email_format",
    "external_id",
    "origin",
    "language",
    "country",
    "correlation_id",
    "scheduled",
    "created",
    "folder",
)


@dataclass(slots=True)
class EnqueueRequest:
    """The events of one intake call: all stored together or not at all."""

    queue: Queue
    events: Sequence[NewEvent]
    operator_id: int | None = None
    folder: str | None = None


@dataclass(slots=True)
class StatusChange:
    """One step of an event's timeline."""

    status: EventStatus
    at: datetime
    reason: str | None = None


@dataclass(slots=True)
class StoredEvent:
    """An event as stored, with its timeline when it was asked for."""

    id: int
    queue: Queue
    type: str
    status: EventStatus
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
    ctx: str
    ctx_format: str
    extra: dict[str, Any]
    folder: str | None
    error_count: int
    process_requested_on: datetime
    created: datetime
    last_modified: datetime
    publication_id: int | None
    delivery_id: int | None
    delivery_log_id: int | None
    #: the event this one is the channel fallback of (SPEC §3.7)
    fallback_of: int | None = None
    #: the event queued again on another channel when this one's message failed
    fallback_event: int | None = None
    history: list[StatusChange] = field(default_factory=list)


@dataclass(slots=True)
class EventFilter:
    """Criteria of an event search; None means "any"."""

    queue: Queue | None = None
    type: str | None = None
    status: EventStatus | None = None
    email: str | None = None
    external_id: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    #: restricts the search to one folder (operators bound to a folder)
    folder: str | None = None


@dataclass(slots=True)
class Enqueued:
    """The ids of one request's events, and which of them this request stored (not replays)."""

    ids: list[int]
    fresh: list[bool]
    #: an idempotency key of the request was used before by another request: nothing stored
    key_reused: str | None = None

    @property
    def replay(self) -> bool:
        """Whether every event was already stored under its idempotency key."""
        return not any(self.fresh)
