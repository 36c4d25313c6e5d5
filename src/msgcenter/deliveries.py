"""Delivery logs: the statuses of one message, how they map onto event statuses, the messages a
sender claims and the outcomes it records (SPEC §3.3, §3.7)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from msgcenter.events.model import Channel, EventStatus, Queue


class DeliveryStatus(enum.IntEnum):
    """Where one message stands."""

    #: waiting for its next attempt (at ``due``)
    PENDING = 0
    #: accepted by the next hop
    SENT = 1
    #: failed for good (permanent error, or no channel to send it)
    FAILED = 2
    #: deliberately not sent (quarantined address)
    IGNORED = 3
    #: claimed by a sender until ``due``; a lapsed claim is attempted again
    SENDING = 4
    #: temporary failures until the validity period ended
    EXPIRED = 5
    #: sent, then confirmed as delivered by the recipient's side (an SMS delivery receipt)
    DELIVERED = 6

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def is_final(self) -> bool:
        return self in FINAL_EVENT_STATUS


#: the event status copied from a final delivery-log status (updateEventStatus)
FINAL_EVENT_STATUS: dict[DeliveryStatus, EventStatus] = {
    DeliveryStatus.SENT: EventStatus.SENT,
    DeliveryStatus.FAILED: EventStatus.DELIVERY_FAILED,
    DeliveryStatus.IGNORED: EventStatus.IGNORED,
    DeliveryStatus.EXPIRED: EventStatus.EXPIRED,
    # the event keeps ``sent``: SPEC §3.3 has no delivered event status
    DeliveryStatus.DELIVERED: EventStatus.SENT,
}


class FailureType(enum.StrEnum):
    """Why a message was not sent; ``permanent`` ones never retry."""

    SOFT = "soft"  # temporary: retried until the validity period ends
    HARD = "hard"  # permanent refusal by the next hop
    USER_UNKNOWN = "user_unknown"  # the address does not exist: quarantined
    QUARANTINED = "quarantined"  # not attempted: the address is in quarantine
    RENDER = "render"  # the template could not be rendered for this event
    ATTACHMENT = "attachment"  # an attachment could not be fetched
    NO_CHANNEL = "no_channel"  # this instance has no connector for the channel
    EXPIRED = "expired"  # the validity period ended before a successful attempt
    COMPLAINT = "complaint"  # the recipient reported a message as spam (ARF): quarantined


@dataclass(slots=True)
class ClaimedMessage:
    """One message a sender must attempt now: its delivery log, its event, its publication."""

    delivery_log_id: int
    publication_id: int
    queue: Queue
    channel: Channel
    address: str
    attempts: int
    valid_until: datetime
    #: the fields a template sees as ``event`` (:data:`~msgcenter.events.model.TEMPLATE_EVENT_FIELDS`)
    event: dict[str, Any]
    ctx: str
    ctx_format: str


@dataclass(slots=True)
class Claim:
    """What one claim of pending events produced."""

    messages: list[ClaimedMessage] = field(default_factory=list)
    not_routed: int = 0
    ignored: int = 0
    #: events whose processing failed: they wait with a backoff, or expired
    failed: int = 0

    @property
    def events(self) -> int:
        """How many events the claim took, whatever became of them."""
        return len(self.messages) + self.not_routed + self.ignored + self.failed


@dataclass(slots=True)
class Outcome:
    """The result of one attempt, to be recorded on its delivery log (and event, when final)."""

    delivery_log_id: int
    event_id: int
    status: DeliveryStatus
    failure_type: FailureType | None = None
    reason: str | None = None
    #: next attempt (status pending)
    due: datetime | None = None
    message_id: str | None = None
    #: (address, channel) to quarantine
    quarantine: tuple[str, Channel] | None = None


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """An address (or device token) that is not sent to, and why."""

    id: int
    address: str
    channel: Channel
    reason: str
    failure_type: str
    active: bool
    #: when it entered the quarantine, and when it last changed (released, or again)
    created: datetime
    last_modified: datetime


@dataclass(frozen=True, slots=True)
class DeliveryLogEntry:
    """One message of an event, as its timeline shows it."""

    id: int
    publication_id: int
    channel: Channel
    address: str
    status: DeliveryStatus
    failure_type: str | None
    failure_reason: str | None
    attempts: int
    message_id: str | None
    created: datetime
    last_modified: datetime
    sent_at: datetime | None
