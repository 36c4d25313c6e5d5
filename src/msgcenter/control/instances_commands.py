"""CLI verbs of the control instance: execution instances and publication.

``msgcenter control instance add|list|test|init|enable|disable`` and
``msgcenter control publish|unpublish|publication TEMPLATE``. They work on the
control instance's database and talk to the execution instances themselves,
through the same code as the API.
"""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import SecretStr, ValidationError
from rich.table import Table

from msgcenter.cli import (
    ConfigOption,
    DbOption,
    cli_database,
    cli_instance,
    console,
)
from msgcenter.control import accounts
from msgcenter.control.accounts import AccountIn
from msgcenter.control.publishing import Publisher
from msgcenter.errors import InvalidInputError
from msgcenter.settings import Settings
from msgcenter.store.control_publications import PublicationState
from msgcenter.store.database import Database

commands = typer.Typer(no_args_is_help=True)
instance_app = typer.Typer(
    help="Execution instances registered on this control instance.", no_args_is_help=True
)
commands.add_typer(instance_app, name="instance")


def _cli_operator() -> str:
    """Who the publication log names for a CLI publication."""
    return f"cli:{getpass.getuser()}"


@instance_app.command("add")
def instance_add(
    name: Annotated[str, typer.Argument(help="internal name (archiving runs as mcSynch_<name>)")],
    url: Annotated[str, typer.Option(help="base URL of the execution instance")],
    login: Annotated[str, typer.Option(help="its operator, with the mc_admin right")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, help="that operator's password")
    ],
    label: Annotated[str | None, typer.Option(help="shown to people (default: the name)")] = None,
    archive_method: Annotated[
        str, typer.Option(help="web (its API) or database (its database, read directly)")
    ] = "web",
    database_url: Annotated[
        str | None, typer.Option(help="its database URL, for the database method")
    ] = None,
    folder: Annotated[
        str | None, typer.Option(help="folder for publications without one of their own")
    ] = None,
    enabled: Annotated[bool, typer.Option(help="publish to it and archive it")] = True,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Register an execution instance (its password and database URL are stored encrypted)."""
    with cli_instance(config, db) as (settings, database):
        try:
            new = AccountIn(
                name=name,
                label=label or name,
                url=url,
                login=login,
                password=SecretStr(password),
                enabled=enabled,
                archive_method=archive_method,  # type: ignore[arg-type]
                database_url=SecretStr(database_url) if database_url else None,
                folder=folder,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise InvalidInputError(f"invalid {field}", detail=f"{field}: {first['msg']}") from None
        added = accounts.register(database, settings, new)
        console.print(f"execution instance '{added.name}' registered at {added.url}")
        if added.enabled:
            _catch_up(database, settings, added.name)


@instance_app.command("list")
def instance_list(config: ConfigOption = None, db: DbOption = None) -> None:
    """List registered execution instances (never their secrets)."""
    with cli_database(config, db) as database:
        found = accounts.list_all(database)
    table = Table("name", "label", "url", "login", "enabled", "archive", "folder", "instance id")
    for i in found:
        table.add_row(
            i.name,
            i.label,
            i.url,
            i.login,
            "yes" if i.enabled else "no",
            i.archive_method,
            i.folder or "",
            i.instance_id or "not initialized",
        )
    console.print(table)


@instance_app.command("test")
def instance_test(name: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Test connection: reachability, credentials, mc_admin, folder, and the database (if used)."""
    with cli_instance(config, db) as (settings, database):
        instance = accounts.get(database, name)
        report = asyncio.run(accounts.check_connection(instance, settings))
    for check in report.checks:
        mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
        console.print(f"{mark} {check.step:<12} {check.detail}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@instance_app.command("init")
def instance_init(
    name: str,
    force: Annotated[
        bool, typer.Option(help="replace a different instance id the execution instance holds")
    ] = False,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Initialize connection: give the execution instance its unique instance id."""
    with cli_instance(config, db) as (settings, database):
        initialized = asyncio.run(accounts.initialize(database, settings, name, force=force))
    console.print(f"execution instance '{name}' has instance id {initialized.instance_id}")


@instance_app.command("enable")
def instance_enable(name: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Enable an execution instance; it gets what was published meanwhile."""
    with cli_instance(config, db) as (settings, database):
        accounts.set_enabled(database, name, True)
        console.print(f"execution instance '{name}' enabled")
        _catch_up(database, settings, name)


@instance_app.command("disable")
def instance_disable(name: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Disable an execution instance: no publication reaches it."""
    with cli_database(config, db) as database:
        accounts.set_enabled(database, name, False)
    console.print(f"execution instance '{name}' disabled")


@commands.command("publish")
def publish(template: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Publish a new version of TEMPLATE to every enabled execution instance."""
    _publication(template, "publish", config, db)


@commands.command("unpublish")
def unpublish(template: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Unpublish TEMPLATE from every enabled execution instance."""
    _publication(template, "unpublish", config, db)


@commands.command("publication")
def publication(template: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Show TEMPLATE's publication state on each execution instance, and its log."""
    _publication(template, "state", config, db)


def _publication(
    template: str,
    action: Literal["publish", "unpublish", "state"],
    config: Path | None,
    db: str | None,
) -> None:
    with cli_instance(config, db) as (settings, database):
        publisher = Publisher(database, settings)
        if action == "publish":
            state = asyncio.run(publisher.publish(template, _cli_operator()))
        elif action == "unpublish":
            state = asyncio.run(publisher.unpublish(template, _cli_operator()))
        else:
            state = publisher.state(template)
    _print_state(state, with_log=action == "state")


def _catch_up(database: Database, settings: Settings, name: str) -> None:
    pending = asyncio.run(Publisher(database, settings).catch_up(instance=name))
    if pending:
        console.print(
            f"[yellow]{pending} publication(s) pending on '{name}'[/yellow]: "
            "the control instance's publicationCatchUp workflow tries again"
        )


def _print_state(state: PublicationState, *, with_log: bool) -> None:
    wanted = f"version {state.version}" if state.published else "unpublished"
    console.print(f"template {state.template}: {wanted}", highlight=False)
    table = Table("instance", "state", "version", "last attempt", "reason")
    for i in state.instances:
        table.add_row(
            i.instance + ("" if i.enabled else " (disabled)"),
            i.state,
            str(i.version),
            i.last_attempt.isoformat(timespec="seconds") if i.last_attempt else "",
            i.failure_reason or "",
        )
    console.print(table)
    if with_log:
        history = Table("at", "action", "version", "operator", title="publication log")
        for entry in state.log:
            history.add_row(
                entry.at.isoformat(timespec="seconds"),
                entry.action,
                str(entry.version),
                entry.operator,
            )
        console.print(history)
