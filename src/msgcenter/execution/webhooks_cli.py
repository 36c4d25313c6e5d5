"""``msgcenter exec webhooks …``: delivery-status webhook subscriptions of this execution
instance, administered on its database (the same service as ``/api/v1/webhooks``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from msgcenter.commandline import LOCAL_ADMIN, ConfigOption, DbOption, cli_instance, console
from msgcenter.execution.webhooks import WebhookAdmin, WithSecret
from msgcenter.webhooks import OutboxStatus, WebhookType, parse_types

commands = typer.Typer(
    help="Delivery-status webhooks: subscriptions, their secrets, replays.", no_args_is_help=True
)
TYPES_HELP = "comma-separated outcomes: " + ", ".join(
    t.value.removeprefix("message.") for t in WebhookType
)


@commands.command("add")
def add(
    url: Annotated[str, typer.Argument(help="where messages are posted (http or https)")],
    types: Annotated[str, typer.Option("--types", help=TYPES_HELP)],
    folder: Annotated[
        str | None,  # noqa: UP007 - typer needs Optional
        typer.Option(help="the folder whose events it receives (none: every folder)"),
    ] = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Subscribe a URL; prints its signing secret, shown this once."""
    with cli_instance(config, db) as (settings, database):
        admin = WebhookAdmin(database, settings.webhooks)
        created = asyncio.run(admin.create(LOCAL_ADMIN, url, parse_types(types), folder))
    _print_secret(created, "created")


@commands.command("list")
def list_subscriptions(config: ConfigOption = None, db: DbOption = None) -> None:
    """List subscriptions with their state."""
    with cli_instance(config, db) as (settings, database):
        found = WebhookAdmin(database, settings.webhooks).subscriptions(LOCAL_ADMIN)
    table = Table("id", "folder", "url", "types", "state", "failing since")
    for s in found:
        table.add_row(
            str(s.id),
            s.folder or "(every)",
            s.url,
            ",".join(sorted(t.value.removeprefix("message.") for t in s.types)),
            "active" if s.active else f"disabled: {s.disabled_reason}",
            s.failing_since.isoformat(timespec="seconds") if s.failing_since else "",
        )
    console.print(table)


@commands.command("enable")
def enable(subscription_id: int, config: ConfigOption = None, db: DbOption = None) -> None:
    """Enable a subscription (its failures are forgotten)."""
    _set_active(subscription_id, True, config, db)


@commands.command("disable")
def disable(subscription_id: int, config: ConfigOption = None, db: DbOption = None) -> None:
    """Disable a subscription: nothing is posted to it until it is enabled."""
    _set_active(subscription_id, False, config, db)


def _set_active(subscription_id: int, active: bool, config: ConfigOption, db: DbOption) -> None:
    with cli_instance(config, db) as (settings, database):
        admin = WebhookAdmin(database, settings.webhooks)
        asyncio.run(admin.change(LOCAL_ADMIN, subscription_id, active=active))
    console.print(f"subscription {subscription_id} {'enabled' if active else 'disabled'}")


@commands.command("remove")
def remove(subscription_id: int, config: ConfigOption = None, db: DbOption = None) -> None:
    """Delete a subscription and its messages."""
    with cli_instance(config, db) as (settings, database):
        WebhookAdmin(database, settings.webhooks).delete(LOCAL_ADMIN, subscription_id)
    console.print(f"subscription {subscription_id} deleted")


@commands.command("rotate-secret")
def rotate_secret(subscription_id: int, config: ConfigOption = None, db: DbOption = None) -> None:
    """A new signing secret; the previous one still signs for webhooks.secret_overlap_seconds."""
    with cli_instance(config, db) as (settings, database):
        rotated = WebhookAdmin(database, settings.webhooks).rotate_secret(
            LOCAL_ADMIN, subscription_id
        )
    _print_secret(rotated, "given a new secret")


@commands.command("replay")
def replay(
    subscription_id: int,
    message_id: Annotated[
        str | None,  # noqa: UP007
        typer.Option("--message", help="one message's webhook-id (msg_…)"),
    ] = None,
    since: Annotated[
        datetime | None,  # noqa: UP007
        typer.Option(help="the messages created since (ISO 8601, UTC)"),
    ] = None,
    until: Annotated[
        datetime | None,  # noqa: UP007
        typer.Option(help="… and before (ISO 8601, UTC)"),
    ] = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Post again, with their webhook-id, one message or a range of messages."""
    with cli_instance(config, db) as (settings, database):
        count = WebhookAdmin(database, settings.webhooks).replay(
            LOCAL_ADMIN,
            subscription_id,
            message_id=message_id,
            since=_utc(since),
            until=_utc(until),
        )
    console.print(f"{count} message(s) of subscription {subscription_id} queued again")


@commands.command("messages")
def list_messages(
    subscription_id: int,
    limit: Annotated[int, typer.Option(min=1, max=1_000)] = 50,
    status: Annotated[OutboxStatus | None, typer.Option()] = None,  # noqa: UP007
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """A subscription's recent messages, newest first."""
    with cli_instance(config, db) as (settings, database):
        found = WebhookAdmin(database, settings.webhooks).messages(
            LOCAL_ADMIN, subscription_id, limit, status
        )
    table = Table("webhook-id", "type", "status", "attempts", "created", "last error")
    for m in found:
        table.add_row(
            m.message_id,
            m.type.value,
            m.status.value,
            str(m.attempts),
            m.created.isoformat(timespec="seconds"),
            (m.last_error or "")[:80],
        )
    console.print(table)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _print_secret(found: WithSecret, what: str) -> None:
    console.print(f"subscription {found.subscription.id} {what}", highlight=False)
    console.print(f"secret: {found.secret}  (shown this once)", highlight=False)
