"""``msgcenter exec bounce-reports …``: the kept bounce reports of this execution instance, read
on its database (the same service as ``/api/v1/admin/bounce-reports``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from msgcenter.bounces import ReportFilter, ReportKind, ShownReport, parse_kind
from msgcenter.commandline import (
    LOCAL_ADMIN,
    ConfigOption,
    DbOption,
    cli_database,
    cli_errors,
    console,
)
from msgcenter.execution.bounce_reports import BounceReports
from msgcenter.web.params import to_utc

commands = typer.Typer(
    help="Kept bounce reports (asynchronous bounces and complaints): list, show.",
    no_args_is_help=True,
)
KINDS = ", ".join(k.value for k in ReportKind)


@commands.command("list")
def list_reports(
    kind: Annotated[
        str | None,  # noqa: UP007 - typer needs Optional
        typer.Option(help=f"only this kind: {KINDS}"),
    ] = None,
    recipient: Annotated[
        str | None,  # noqa: UP007
        typer.Option(help="only this address (whole)"),
    ] = None,
    since: Annotated[
        datetime | None,  # noqa: UP007
        typer.Option(help="received at or after (ISO 8601, UTC)"),
    ] = None,
    until: Annotated[
        datetime | None,  # noqa: UP007
        typer.Option(help="… and before (ISO 8601, UTC)"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="at most this many")] = 50,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """List the kept reports, newest first, with the counts by kind of the last 24 hours."""
    with cli_errors():
        criteria = ReportFilter(
            kind=parse_kind(kind) if kind else None,
            recipient=recipient,
            since=to_utc(since),
            until=to_utc(until),
        )
    with cli_database(config, db) as database:
        reports = BounceReports(database)
        found = reports.search(criteria, LOCAL_ADMIN, limit=limit)
        counted = reports.counts(LOCAL_ADMIN)
    table = Table("id", "received", "kind", "recipient", "delivery log", "event", "reason")
    for r in found:
        table.add_row(
            str(r.id),
            _when(r.received),
            r.kind.value,
            r.recipient or "",
            str(r.delivery_log_id or ""),
            str(r.event_id or ""),
            r.reason,
        )
    console.print(table)
    by_kind = ", ".join(f"{k.value} {n}" for k, n in counted.counts.items())
    console.print(f"{len(found)} report(s) shown; last 24 h: {by_kind}", highlight=False)


@commands.command("show")
def show(report_id: int, config: ConfigOption = None, db: DbOption = None) -> None:
    """Show one kept report."""
    with cli_database(config, db) as database:
        found = BounceReports(database).get(report_id, LOCAL_ADMIN)
    console.print(_detail(found))


def _detail(report: ShownReport) -> Table:
    table = Table("field", "value", show_header=False)
    for name, value in (
        ("id", str(report.id)),
        ("received", _when(report.received)),
        ("kind", report.kind.value),
        ("recipient", report.recipient or "(none)"),
        ("delivery log", str(report.delivery_log_id or "(none here)")),
        ("event", str(report.event_id or "")),
        ("folder", report.folder or ""),
        ("size", f"{report.size} bytes"),
        ("reason", report.reason),
    ):
        table.add_row(name, value)
    return table


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
