"""CLI verbs of the control instance for execution instances:
``msgcenter control instance add|list|test|init|enable|disable``.

They work on the control instance's database and talk to the execution
instances themselves, through the same services as the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal, cast

import typer
from pydantic import SecretStr, ValidationError
from rich.table import Table

from msgcenter.commandline import ConfigOption, DbOption, cli_instance, console
from msgcenter.control.instances.service import AccountIn, InstanceService
from msgcenter.control.services import control_services
from msgcenter.errors import InvalidInputError

commands = typer.Typer(no_args_is_help=True)
instance_app = typer.Typer(
    help="Execution instances registered on this control instance.", no_args_is_help=True
)
commands.add_typer(instance_app, name="instance")


@contextmanager
def _instances(config: Path | None, db: str | None) -> Iterator[InstanceService]:
    """The instance service of the control instance a command works on."""
    with cli_instance(config, db) as (settings, database):
        yield control_services(database, settings).instances


def _say_pending(name: str, pending: int) -> None:
    if pending:
        console.print(
            f"[yellow]{pending} publication(s) pending on '{name}'[/yellow]: "
            "the control instance's publicationCatchUp workflow tries again"
        )


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
    with _instances(config, db) as instances:
        try:
            new = AccountIn(
                name=name,
                label=label or name,
                url=url,
                login=login,
                password=SecretStr(password),
                enabled=enabled,
                archive_method=cast(Literal["web", "database"], archive_method),
                database_url=SecretStr(database_url) if database_url else None,
                folder=folder,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise InvalidInputError(f"invalid {field}", detail=f"{field}: {first['msg']}") from None
        added, pending = asyncio.run(instances.add(new))
    console.print(f"execution instance '{added.name}' registered at {added.url}")
    _say_pending(added.name, pending)


@instance_app.command("list")
def instance_list(config: ConfigOption = None, db: DbOption = None) -> None:
    """List registered execution instances (never their secrets)."""
    with _instances(config, db) as instances:
        found = instances.list_all()
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
    with _instances(config, db) as instances:
        report = asyncio.run(instances.check_connection(name))
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
    with _instances(config, db) as instances:
        initialized = asyncio.run(instances.initialize(name, force=force))
    console.print(f"execution instance '{name}' has instance id {initialized.instance_id}")


@instance_app.command("enable")
def instance_enable(name: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Enable an execution instance; it gets what was published meanwhile."""
    with _instances(config, db) as instances:
        _enabled, pending = asyncio.run(instances.set_enabled(name, True))
    console.print(f"execution instance '{name}' enabled")
    _say_pending(name, pending)


@instance_app.command("disable")
def instance_disable(name: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Disable an execution instance: no publication reaches it."""
    with _instances(config, db) as instances:
        asyncio.run(instances.set_enabled(name, False))
    console.print(f"execution instance '{name}' disabled")
