"""CLI verbs of the control instance: archiving (``msgcenter control archive run|status``)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from msgcenter.commandline import ConfigOption, DbOption, cli_instance, console, err_console
from msgcenter.control.services import control_services

commands = typer.Typer(no_args_is_help=True)
archive_app = typer.Typer(
    help="Archives of execution instances: run one now, show where each stands.",
    no_args_is_help=True,
)
commands.add_typer(archive_app, name="archive")


@archive_app.command("run")
def archive_run(
    name: Annotated[str, typer.Argument(help="internal name of the execution instance")],
    wait: Annotated[
        float,
        typer.Option(
            help="seconds to wait for a run in progress (or a crashed run's lease) to end"
        ),
    ] = 0.0,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Archive an execution instance now: its final events, delivery logs and quarantine changes."""
    with cli_instance(config, db) as (settings, database):
        archiving = control_services(database, settings).archiving
        run = asyncio.run(archiving.run(name, wait_seconds=wait))
    if run.outcome == "already running":
        until = run.held_until.isoformat(timespec="seconds") if run.held_until else "soon"
        err_console.print(
            f"[yellow]the archive of '{name}' is already running (lease until {until})[/yellow]"
        )
        raise typer.Exit(1)
    console.print(
        f"archive of '{name}' ({run.method}): {run.events} events "
        f"({run.new_events} new), {run.delivery_logs} delivery logs, "
        f"{run.quarantine} quarantine changes, {run.tracking_logs} new tracking logs, "
        f"{run.stats_samples} new queue samples in "
        f"{run.pages} pages, {run.seconds:.1f} s; "
        f"watermark {run.watermark_at.isoformat() if run.watermark_at else 'none'} / {run.watermark_id}"
    )
    if run.error:
        err_console.print(f"[red]error:[/red] {run.error}")
        raise typer.Exit(1)


@archive_app.command("create-workflow")
def archive_create_workflow(
    name: Annotated[str, typer.Argument(help="internal name of the execution instance")],
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Create the archiving workflow (mcSynch_<name>) of an execution instance: a running
    control instance starts it within seconds and archives every archive_interval_seconds."""
    with cli_instance(config, db) as (settings, database):
        archiving = control_services(database, settings).archiving
        done = asyncio.run(archiving.create_workflow(name))
    if done.created:
        console.print(f"archiving workflow {done.workflow} created ({done.state})")
    else:
        console.print(f"archiving workflow {done.workflow} exists already ({done.state})")


@archive_app.command("status")
def archive_status_command(config: ConfigOption = None, db: DbOption = None) -> None:
    """Show each execution instance's archive: watermark, lag, last run and success, last error."""
    with cli_instance(config, db) as (settings, database):
        found = control_services(database, settings).archiving.status()
    table = Table(
        "instance",
        "method",
        "watermark",
        "lag",
        "last run",
        "last success",
        "archived",
        "last error",
    )
    for a in found:
        table.add_row(
            a.instance + ("" if a.enabled else " (disabled)"),
            a.method,
            _when(a.watermark_at) + (f" / {a.watermark_id}" if a.watermark_at else ""),
            "-" if a.lag_seconds is None else f"{a.lag_seconds:.0f} s",
            _when(a.last_run) + (" (running)" if a.running else ""),
            _when(a.last_success),
            str(a.archived_events),
            (a.last_error or "")[:120],
        )
    console.print(table)


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else moment.isoformat(timespec="seconds")
