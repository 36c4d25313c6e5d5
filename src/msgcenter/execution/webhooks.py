"""Webhook subscriptions of an execution instance, as operators manage them (SPEC §3.7, §3.9).

An operator restricted to a folder sees and manages only its folder's
subscriptions, and the ones it creates are of its folder; an operator without
a folder may subscribe one folder, or every folder (no folder given). A target
URL is checked for syntax and, unless ``allow_private_networks``, refused when
its host resolves to a non-public address, as attachment URLs are.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Connection

from msgcenter.channels.network import TargetRefusedError, checked_address
from msgcenter.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from msgcenter.operators import Operator
from msgcenter.settings import WebhookSettings
from msgcenter.store import webhooks as webhook_store
from msgcenter.store.database import Database
from msgcenter.webhooks import (
    OutboxMessage,
    OutboxStatus,
    Subscription,
    WebhookType,
    new_secret,
    parse_url,
)

log = structlog.get_logger(__name__)

#: most messages listed at once
MAX_LISTED = 1_000


@dataclass(frozen=True, slots=True)
class WithSecret:
    """A subscription and its new secret, shown this once."""

    subscription: Subscription
    secret: str


class WebhookAdmin:
    """Creates, changes, lists and replays webhook subscriptions."""

    def __init__(self, db: Database, settings: WebhookSettings) -> None:
        self._db = db
        self.settings = settings

    async def create(
        self,
        operator: Operator,
        url: str,
        types: frozenset[WebhookType],
        folder: str | None = None,
    ) -> WithSecret:
        """A new active subscription, with its secret."""
        if operator.folder is not None:
            if folder is not None and folder != operator.folder:
                raise PermissionDeniedError(
                    f"operator '{operator.login}' may only subscribe its folder '{operator.folder}'"
                )
            folder = operator.folder
        await self.check_target(url)
        secret = new_secret()

        def add() -> Subscription:
            with self._db.write() as conn:
                return webhook_store.add_subscription(
                    conn, folder, url, types, secret, datetime.now(UTC)
                )

        created = await asyncio.to_thread(add)
        log.info(
            "webhook subscription created",
            action="webhooks.subscribed",
            subscription=created.id,
            folder=folder,
            types=sorted(types),
            by=operator.login,
        )
        return WithSecret(created, secret)

    async def check_target(self, url: str) -> None:
        """Refuse a URL with bad syntax, or whose host cannot be reached or is not public
        (unless ``allow_private_networks``), as :class:`InvalidInputError`."""
        target = parse_url(url)
        try:
            await checked_address(
                target.host,
                target.port,
                allow_private_networks=self.settings.allow_private_networks,
            )
        except TargetRefusedError as exc:
            raise InvalidInputError("webhook URL refused", detail=exc.reason) from None

    def subscriptions(self, operator: Operator) -> list[Subscription]:
        """The subscriptions the operator may see."""
        with self._db.read() as conn:
            return webhook_store.list_subscriptions(conn, datetime.now(UTC), operator.folder)

    def get(self, operator: Operator, subscription_id: int) -> Subscription:
        """One subscription the operator may see (:class:`NotFoundError` for another folder's)."""
        with self._db.read() as conn:
            return _visible(conn, operator, subscription_id, datetime.now(UTC))

    async def change(
        self,
        operator: Operator,
        subscription_id: int,
        *,
        url: str | None = None,
        types: frozenset[WebhookType] | None = None,
        active: bool | None = None,
    ) -> Subscription:
        """Change a subscription's URL (checked as on creation), its types, or enable or
        disable it (enabling clears its failures)."""
        # another folder's subscription is not found, whatever its new URL
        await asyncio.to_thread(self.get, operator, subscription_id)
        if url is not None:
            await self.check_target(url)

        def update() -> Subscription:
            with self._db.write() as conn:
                return webhook_store.update_subscription(
                    conn, subscription_id, datetime.now(UTC), url=url, types=types, active=active
                )

        return await asyncio.to_thread(update)

    def delete(self, operator: Operator, subscription_id: int) -> None:
        """Delete a subscription and its messages."""
        with self._db.write() as conn:
            _visible(conn, operator, subscription_id, datetime.now(UTC))
            webhook_store.delete_subscription(conn, subscription_id)
        log.info(
            "webhook subscription deleted",
            action="webhooks.deleted",
            subscription=subscription_id,
            by=operator.login,
        )

    def rotate_secret(self, operator: Operator, subscription_id: int) -> WithSecret:
        """A new secret; the previous one still signs for ``secret_overlap_seconds``."""
        secret = new_secret()
        now = datetime.now(UTC)
        with self._db.write() as conn:
            _visible(conn, operator, subscription_id, now)
            rotated = webhook_store.rotate_secret(
                conn,
                subscription_id,
                secret,
                now + timedelta(seconds=self.settings.secret_overlap_seconds),
                now,
            )
        log.info(
            "webhook secret rotated",
            action="webhooks.secret_rotated",
            subscription=subscription_id,
            by=operator.login,
        )
        return WithSecret(rotated, secret)

    def replay(
        self,
        operator: Operator,
        subscription_id: int,
        *,
        message_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Post again, with their webhook-id, one message or those created in [since, until);
        returns how many were queued. The subscription must be active."""
        if (message_id is None) == (since is None):
            raise InvalidInputError(
                "nothing to replay", detail="give either message_id, or since (and until)"
            )
        if until is not None and since is not None and until <= since:
            raise InvalidInputError("empty range", detail="until must be after since")
        now = datetime.now(UTC)
        with self._db.write() as conn:
            found = _visible(conn, operator, subscription_id, now)
            if not found.active:
                raise ConflictError(
                    "subscription disabled",
                    detail=f"subscription {subscription_id} is disabled "
                    f"({found.disabled_reason}): enable it before replaying",
                )
            count = webhook_store.replay(
                conn, subscription_id, now, message_id=message_id, since=since, until=until
            )
        log.info(
            "webhook messages replayed",
            action="webhooks.replayed",
            subscription=subscription_id,
            messages=count,
            by=operator.login,
        )
        return count

    def messages(
        self,
        operator: Operator,
        subscription_id: int,
        limit: int = 100,
        status: OutboxStatus | None = None,
    ) -> list[OutboxMessage]:
        """A subscription's newest messages first."""
        with self._db.read() as conn:
            _visible(conn, operator, subscription_id, datetime.now(UTC))
            return webhook_store.messages(conn, subscription_id, min(limit, MAX_LISTED), status)


def _visible(
    conn: Connection, operator: Operator, subscription_id: int, now: datetime
) -> Subscription:
    """The subscription, if ``operator`` sees it: another folder's is not found, as if it did not
    exist."""
    found = webhook_store.get_subscription(conn, subscription_id, now)
    if operator.folder is not None and found.folder != operator.folder:
        raise NotFoundError(f"no webhook subscription {subscription_id}")
    return found
