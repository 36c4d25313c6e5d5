"""The intake service: check the caller's right and limits, store events, return their ids.

SOAP and REST parse their own formats into :class:`NewEvent` and call this;
it never sees HTTP and raises only :mod:`msgcenter.errors`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from msgcenter.errors import IdempotencyKeyReusedError, PayloadTooLargeError
from msgcenter.events.model import LIST_KEY_SEPARATOR, Enqueued, EnqueueRequest, NewEvent, Queue
from msgcenter.intake.committer import GroupCommitter
from msgcenter.intake.in_force import PublishedRoutes
from msgcenter.monitoring import metrics
from msgcenter.operators import Operator, Right
from msgcenter.settings import IntakeSettings


class IntakeService:
    """Stores validated events for an operator; an id is returned only once committed."""

    def __init__(
        self, committer: GroupCommitter, settings: IntakeSettings, published: PublishedRoutes
    ) -> None:
        self._committer = committer
        self._settings = settings
        self._published = published

    @property
    def settings(self) -> IntakeSettings:
        """The intake limits (the adapters enforce the size limits while parsing)."""
        return self._settings

    async def push(self, queue: Queue, events: Sequence[NewEvent], operator: Operator) -> Enqueued:
        """Store ``events`` in ``queue`` all together, or none of them; their ids come back in order."""
        operator.require(Right.MC_PUSH)
        if len(events) > self._settings.max_events_per_request:
            raise PayloadTooLargeError(
                "too many events in one request",
                detail=f"{len(events)} events; at most {self._settings.max_events_per_request} per request",
            )
        enqueued = await self._committer.submit(
            EnqueueRequest(queue, events, operator_id=operator.id, folder=operator.folder)
        )
        if enqueued.key_reused is not None:
            raise IdempotencyKeyReusedError(
                "idempotency key reused with another request",
                detail=f"the key {enqueued.key_reused.split(LIST_KEY_SEPARATOR)[0]!r} was "
                "used before with a different request; a retry must repeat the request "
                "unchanged, a new request needs a new key",
            )
        known = await self._published.known(queue)
        received = Counter(
            new.type if new.type in known else metrics.UNPUBLISHED_TYPE
            for new, fresh in zip(events, enqueued.fresh, strict=True)
            if fresh
        )
        for label, count in received.items():  # one metric update per type, not per event
            metrics.EVENTS_RECEIVED.labels(queue=queue.value, type=label).inc(count)
        return enqueued

    async def warnings(
        self, queue: Queue, events: Sequence[NewEvent], operator: Operator
    ) -> list[str]:
        """What the caller should know about events just stored: their types without a
        publication in force (they are kept, as the model product does, but nothing is sent)."""
        return await self._published.unpublished(
            queue, (new.type for new in events), operator.folder
        )
