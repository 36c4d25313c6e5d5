"""What a channel reports for one attempt, and how it becomes a delivery-log outcome (SPEC §3.7)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from msgcenter.channels.health import RelayHealth
from msgcenter.deliveries import ClaimedMessage, DeliveryStatus, FailureType, Outcome
from msgcenter.publications import Publication
from msgcenter.render import Ctx, RenderedMessage


class AttemptKind(enum.Enum):
    """The three ways an attempt ends."""

    SENT = "sent"
    TEMPORARY = "temporary"  # retried with backoff within the validity period
    PERMANENT = "permanent"  # fails the message for good


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt's result, as a channel reports it."""

    kind: AttemptKind
    reason: str = ""
    message_id: str | None = None
    failure_type: FailureType | None = None
    #: the address must not be used again (user unknown, unregistered device)
    quarantine: bool = False
    #: seconds the next hop asked to wait before trying again (HTTP ``Retry-After``,
    #: RFC 9110 §10.2.3); a temporary failure is not retried sooner than this
    retry_after: float | None = None


class ChannelSender(Protocol):
    """A connector for one channel: email, SMS, push."""

    async def send(
        self, message: ClaimedMessage, publication: Publication, rendered: RenderedMessage, ctx: Ctx
    ) -> Attempt:
        """Attempt delivery of ``rendered`` to ``message.address``; never raises for a delivery failure."""

    async def start(self) -> None:
        """Get ready to send, from the event loop that will send: open what the connector
        keeps open (an SMSC's binds, so that receipts flow before the first message)."""

    @property
    def health(self) -> RelayHealth:
        """Whether the channel's relay can be reached, as this connector's sessions see it."""

    async def probe(self) -> bool:
        """Try to reach the relay without sending anything; whether it answered."""

    async def close(self) -> None:
        """Release connections."""


def retry_delay(attempts: int, base: float, maximum: float) -> timedelta:
    """Exponential backoff: ``base`` after the first failure, doubling, capped at ``maximum``."""
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), maximum))


def outcome_of(
    message: ClaimedMessage, attempt: Attempt, now: datetime, *, base: float, maximum: float
) -> Outcome:
    """The delivery-log outcome of ``attempt`` (a temporary failure retries or expires)."""
    if attempt.kind is AttemptKind.SENT:
        return Outcome(
            message.delivery_log_id,
            message.event["id"],
            DeliveryStatus.SENT,
            message_id=attempt.message_id,
        )
    if attempt.kind is AttemptKind.PERMANENT:
        return Outcome(
            message.delivery_log_id,
            message.event["id"],
            DeliveryStatus.FAILED,
            failure_type=attempt.failure_type or FailureType.HARD,
            reason=attempt.reason,
            message_id=attempt.message_id,
            quarantine=(message.address, message.channel) if attempt.quarantine else None,
        )
    delay = retry_delay(message.attempts + 1, base, maximum)
    if attempt.retry_after is not None and attempt.retry_after > delay.total_seconds():
        delay = timedelta(seconds=attempt.retry_after)
    due = now + delay
    if due >= message.valid_until:
        return Outcome(
            message.delivery_log_id,
            message.event["id"],
            DeliveryStatus.EXPIRED,
            failure_type=FailureType.EXPIRED,
            reason=f"validity period ended after {message.attempts + 1} attempts; last: {attempt.reason}",
        )
    return Outcome(
        message.delivery_log_id,
        message.event["id"],
        DeliveryStatus.PENDING,
        failure_type=attempt.failure_type or FailureType.SOFT,
        reason=attempt.reason,
        due=due,
    )


def failed(message: ClaimedMessage, failure_type: FailureType, reason: str) -> Outcome:
    """A permanent failure decided before any send attempt (render error, no channel…)."""
    return Outcome(
        message.delivery_log_id,
        message.event["id"],
        DeliveryStatus.FAILED,
        failure_type=failure_type,
        reason=reason,
    )
