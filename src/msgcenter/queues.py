"""Where an execution instance's queues stand (SPEC §3.10): what waits, since when, and what
went through lately — for its console, and for its control instance's dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class QueueSize:
    """One queue now: events not yet routed, messages not yet sent, the oldest waiting event."""

    queue: str
    pending_events: int
    pending_messages: int
    #: when the oldest due pending event was asked to be processed (None: nothing waits)
    oldest_pending: datetime | None


@dataclass(frozen=True, slots=True)
class Throughput:
    """What went through in a window: events received, messages sent and failed."""

    seconds: float
    events_received: int
    messages_sent: int
    messages_failed: int
