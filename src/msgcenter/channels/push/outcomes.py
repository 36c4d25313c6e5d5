"""What one push request to APNs or FCM came to, in the terms the sender needs."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class PushStatus(enum.Enum):
    """How a push request ended."""

    SENT = "sent"
    #: retried later (429, 5xx, the service unreachable, credentials refused)
    TEMPORARY = "temporary"
    #: fails the message for good
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """One push request's result."""

    status: PushStatus
    reason: str = ""
    #: the service's id of the notification (APNs ``apns-id``, FCM message name)
    message_id: str | None = None
    #: the device token is dead (APNs BadDeviceToken / Unregistered, FCM UNREGISTERED)
    quarantine: bool = False
    #: seconds the service asked to wait before trying again (``Retry-After``)
    retry_after: float | None = None
    #: the service could not be reached at all (counts against the relay's health)
    unreachable: bool = False


def unreachable(service: str, exc: Exception) -> PushOutcome:
    """The outcome of a request that got no answer from ``service`` (temporary)."""
    return PushOutcome(
        PushStatus.TEMPORARY,
        f"{service} not reachable: {type(exc).__name__}: {exc}",
        unreachable=True,
    )


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date
    (RFC 9110 §10.2.3); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
