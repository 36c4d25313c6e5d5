"""Whether a channel's relay can be reached, as its sessions see it.

A connector reports each session it could not open (refused connection,
timeout, greeting or AUTH refused, connection lost) and each one that worked.
An outage is logged once when it starts (``relay.unavailable``), then at most
every ``REMINDER_SECONDS`` with the number of failures since
(``relay.still_unavailable``), and once when it ends with its duration
(``relay.available``); ``msgcenter_relay_available{channel}`` follows it. A
refusal of one message (a 4xx or 5xx reply to RCPT or DATA) says nothing of the
relay and is not reported here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from msgcenter.monitoring import metrics

log = structlog.get_logger(__name__)

#: a relay still unreachable is logged again at most this often (seconds)
REMINDER_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Outage:
    """One period during which the relay could not be reached."""

    #: when the first failure happened (wall clock), and its reason
    since: datetime
    reason: str
    #: failures counted so far
    failures: int


class RelayHealth:
    """The state of one channel's relay; used from the event loop the connector runs in."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._outage: Outage | None = None
        self._started = 0.0
        self._reminded = 0.0
        #: outages that ended and whose messages are not yet retried (see :meth:`take_ended`)
        self._ended: list[Outage] = []
        metrics.RELAY_AVAILABLE.labels(channel=channel).set(1)

    @property
    def outage(self) -> Outage | None:
        """The outage going on, or None while the relay answers."""
        return self._outage

    def failed(self, reason: str) -> None:
        """A session could not be opened, or was lost: the relay is unreachable."""
        metrics.RELAY_FAILURES.labels(channel=self.channel).inc()
        now = time.monotonic()
        if self._outage is None:
            self._outage = Outage(datetime.now(UTC), reason, 1)
            self._started = self._reminded = now
            metrics.RELAY_AVAILABLE.labels(channel=self.channel).set(0)
            log.warning(
                "the relay cannot be reached: messages wait and are retried",
                action="relay.unavailable",
                channel=self.channel,
                reason=reason,
            )
            return
        self._outage = Outage(self._outage.since, reason, self._outage.failures + 1)
        if now - self._reminded >= REMINDER_SECONDS:
            self._reminded = now
            log.warning(
                "the relay still cannot be reached",
                action="relay.still_unavailable",
                channel=self.channel,
                reason=reason,
                failures=self._outage.failures,
                outage_seconds=round(now - self._started, 1),
            )

    def succeeded(self) -> None:
        """A session was opened (or a message accepted): the relay answers."""
        if self._outage is None:
            return
        outage, self._outage = self._outage, None
        self._ended.append(outage)
        metrics.RELAY_AVAILABLE.labels(channel=self.channel).set(1)
        log.info(
            "the relay answers again",
            action="relay.available",
            channel=self.channel,
            failures=outage.failures,
            outage_seconds=round(time.monotonic() - self._started, 1),
        )

    def take_ended(self) -> list[Outage]:
        """The outages that ended since the last call (their messages can be retried now)."""
        ended, self._ended = self._ended, []
        return ended

    def describe(self) -> str:
        """One line for a readiness answer: ``ok``, or since when and why it is unreachable."""
        outage = self._outage
        if outage is None:
            return "ok"
        return (
            f"unreachable since {outage.since.isoformat(timespec='seconds')} "
            f"({outage.failures} failed attempts): {outage.reason}"
        )
