"""CLI verb of the control instance: reports (``msgcenter report NAME``, also under ``control``)."""

from __future__ import annotations

import sys
from datetime import datetime
from enum import StrEnum
from typing import Annotated

import orjson
import typer
from rich.table import Table

from msgcenter.commandline import (
    LOCAL_ADMIN,
    ConfigOption,
    DbOption,
    cli_errors,
    cli_instance,
    console,
)
from msgcenter.control.reports.service import ReportQuery, ReportsService
from msgcenter.errors import InvalidInputError
from msgcenter.reports import (
    Check,
    EventHistoryReport,
    Granularity,
    Level,
    ProcessingTimeReport,
    Report,
    ReportName,
    ServiceLevelReport,
    to_csv,
)

commands = typer.Typer(no_args_is_help=True)


class Format(StrEnum):
    """How the report is printed."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def _moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(
            f"invalid {option}", detail=f"{option}: {value!r} is not an ISO 8601 date or time"
        ) from None


@commands.command("report")
def report_command(
    name: Annotated[ReportName, typer.Argument(help="the report", case_sensitive=False)],
    instance: Annotated[
        str | None, typer.Option(help="an execution instance's internal name (default: all)")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="start, ISO 8601 (UTC without an offset); default: 24 hours (30 days "
            "for event-history) before --to",
        ),
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="end, ISO 8601; default: now")] = None,
    granularity: Annotated[
        Granularity | None,
        typer.Option(help="how the period is divided (default: hour; day for event-history)"),
    ] = None,
    channel: Annotated[
        str | None, typer.Option(help="email, sms, ios or android (default: all)")
    ] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="one event type")] = None,
    output: Annotated[Format, typer.Option("--format", help="table, json or csv")] = Format.TABLE,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Print a report: service-level, processing-time or event-history (SPEC §4)."""
    with cli_errors():
        query = ReportQuery(
            start=_moment(start, "--from"),
            end=_moment(end, "--to"),
            granularity=granularity,
            instance=instance,
            channel=channel,
            event_type=event_type,
        )
    with cli_instance(config, db) as (settings, database):
        report = ReportsService(database, settings).report(name, query, LOCAL_ADMIN)
    if output is Format.JSON:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif output is Format.CSV:
        sys.stdout.write(to_csv(report).replace("\r\n", "\n"))
    else:
        _print(report)


def _print(report: Report) -> None:
    scope = report.scope
    console.print(
        f"{report.report.value} from {scope.start:%Y-%m-%d %H:%M} to {scope.end:%Y-%m-%d %H:%M} "
        f"UTC by {scope.granularity.value}"
        + "".join(
            f", {label} {value}"
            for label, value in (
                ("instance", scope.instance),
                ("channel", scope.channel),
                ("type", scope.event_type),
                ("folder", scope.folder),
            )
            if value is not None
        ),
        highlight=False,
    )
    if isinstance(report, ServiceLevelReport):
        table = Table("period", "events", "sent", "errors", "error rate", "avg sending s")
        for point in report.series:
            f = point.figures
            table.add_row(
                f"{point.period:%Y-%m-%d %H:%M}",
                str(f.events),
                str(f.sent),
                str(f.errors),
                _num(f.error_rate),
                _num(f.average_sending_seconds),
            )
        t = report.totals
        table.add_row(
            "total", str(t.events), str(t.sent), str(t.errors), _num(t.error_rate),
            _num(t.average_sending_seconds), style="bold",
        )  # fmt: skip
        console.print(table)
        console.print(
            f"errors: {t.not_taken_into_account} not taken into account, {t.expired} expired, "
            f"{t.delivery_failed} delivery failed, {t.ignored} ignored",
            highlight=False,
        )
    elif isinstance(report, ProcessingTimeReport):
        table = Table("event type", "time", "count", "average s", "p50 s", "p95 s", "p99 s")
        rows = [("all", report.totals), *((t.event_type, t.figures) for t in report.by_type)]
        for label, figures in rows:
            for measure in ("queue", "sending", "total"):
                m = getattr(figures, measure)
                table.add_row(
                    label, measure, str(m.count), _num(m.average_seconds), _num(m.p50_seconds),
                    _num(m.p95_seconds), _num(m.p99_seconds),
                )  # fmt: skip
        console.print(table)
        queues = Table("queue", "samples", "min", "average", "max")
        for q in report.queues:
            queues.add_row(
                q.queue, str(q.samples), _num(q.min_pending_events),
                _num(q.average_pending_events), _num(q.max_pending_events),
            )  # fmt: skip
        console.print(queues)
    elif isinstance(report, EventHistoryReport):
        table = Table("event type", *(f"{p:%Y-%m-%d %H:%M}" for p in report.periods), "total")
        for row in report.rows:
            table.add_row(
                row.event_type,
                *(f"{c.sent}/{c.events}" for c in row.cells),
                f"{row.sent}/{row.events}",
            )
        table.add_row(
            "total", *(f"{c.sent}/{c.events}" for c in report.totals),
            f"{report.sent}/{report.events}", style="bold",
        )  # fmt: skip
        console.print(table)
        console.print("cells: sent/events", highlight=False)
    crossed: list[Check] = [] if isinstance(report, EventHistoryReport) else report.crossed
    for check in crossed:
        colour = "red" if check.level is Level.ALERT else "yellow"
        limit = check.alert if check.level is Level.ALERT else check.warning
        console.print(
            f"[{colour}]{check.level.value}[/{colour}]: {check.indicator}"
            + (f" of {check.event_type}" if check.event_type else "")
            + f" is {_num(check.value)} (threshold {_num(limit)})",
            highlight=False,
        )


def _num(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}".rstrip("0").rstrip(".") if value else "0"
