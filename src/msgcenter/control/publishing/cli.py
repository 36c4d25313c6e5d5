"""CLI verbs of the control instance for publication:
``msgcenter control publish|unpublish|publication TEMPLATE``, through the same service as the API.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import typer
from rich.table import Table

from msgcenter.commandline import ConfigOption, DbOption, cli_instance, cli_login, console
from msgcenter.control.services import control_services
from msgcenter.publications import PublicationState

commands = typer.Typer(no_args_is_help=True)


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
        publishing = control_services(database, settings).publishing
        if action == "publish":
            state = asyncio.run(publishing.publish(template, cli_login()))
        elif action == "unpublish":
            state = asyncio.run(publishing.unpublish(template, cli_login()))
        else:
            state = publishing.state(template)
    _print_state(state, with_log=action == "state")


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
