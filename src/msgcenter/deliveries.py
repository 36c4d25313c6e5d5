"""Delivery logs: the statuses of one message, and how they map onto event statuses (SPEC §3.3, §3.7)."""

from __future__ import annotations

import enum

from msgcenter.events.model import EventStatus


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
