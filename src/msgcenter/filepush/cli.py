"""``msgcenter push FILE``: push the events of a JSON-lines or XML file to an execution instance.

A progress bar while it runs (on a terminal), then a summary: events stored,
replays (already stored by an earlier run with the same key), refusals with
their line and the server's reason, and the ids. The exit status is 1 when any
line was refused or the push stopped before the end; running the same command
again resumes it (see :mod:`msgcenter.filepush.service`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, NoReturn, TextIO

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from msgcenter.commandline import console, err_console
from msgcenter.events.model import SOAP_ATTRIBUTE_FIELDS, Queue
from msgcenter.filepush.service import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CONCURRENCY,
    DEFAULT_URL,
    MAX_RUN_KEY,
    FilePusher,
    Outcome,
    PushOptions,
    PushReport,
)
from msgcenter.filepush.source import FileFormat, detect_format, read_items, scan

#: refusals listed in the summary (the ids file has every one)
SHOWN_REFUSALS = 20
_KEY = re.compile(rf"[A-Za-z0-9._~:/@+=-]{{1,{MAX_RUN_KEY}}}")


def push(
    file: Annotated[
        Path,
        typer.Argument(
            help="events: JSON lines (one REST event object per line) or XML (<rtEvent>/"
            "<batchEvent> elements, as in SOAP PushEvents)",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    url: Annotated[str, typer.Option(help="the execution instance")] = DEFAULT_URL,
    user: Annotated[
        str | None,  # noqa: UP007 - typer needs Optional
        typer.Option("--user", "-u", help="operator login (prompted for when no --token)"),
    ] = None,
    password: Annotated[
        str | None,  # noqa: UP007
        typer.Option(
            help="operator password (prompted for when missing)",
            envvar="MSGCENTER_PUSH_PASSWORD",
        ),
    ] = None,
    token: Annotated[
        str | None,  # noqa: UP007
        typer.Option(
            help="a Bearer token instead of a login: a session or a technical account's "
            "access token",
            envvar="MSGCENTER_PUSH_TOKEN",
        ),
    ] = None,
    queue: Annotated[
        Queue | None,  # noqa: UP007
        typer.Option(help="rt or batch (default: rt; in XML, each element's name)"),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=10_000, help="events per request")
    ] = DEFAULT_BATCH_SIZE,
    concurrency: Annotated[
        int, typer.Option(min=1, max=32, help="requests in flight")
    ] = DEFAULT_CONCURRENCY,
    key: Annotated[
        str | None,  # noqa: UP007
        typer.Option(
            help="names this push in the idempotency keys; the same key (and --batch-size) "
            "resumes it without storing anything twice (default: the file's SHA-256)"
        ),
    ] = None,
    file_format: Annotated[
        FileFormat | None,  # noqa: UP007
        typer.Option("--format", help="jsonl or xml (default: from the extension)"),
    ] = None,
    ids: Annotated[
        Path | None,  # noqa: UP007
        typer.Option(
            "--ids",
            help="write every line's outcome there: line, event id, refusal (tab-separated)",
            dir_okay=False,
        ),
    ] = None,
    max_events: Annotated[
        int | None,  # noqa: UP007
        typer.Option(min=1, help="push only the first N events (the rest later, same key)"),
    ] = None,
    retry_for: Annotated[
        float,
        typer.Option(
            min=0, help="seconds to keep retrying while the instance is unreachable or busy"
        ),
    ] = 60.0,
) -> None:
    """Push the events of a file to an execution instance over REST, in batches, resumably.

    Each batch carries an idempotency key made of --key (default: the file's hash) and the
    position of its first event: running the same command on the same file again stores
    nothing twice, whether the first run ended, stopped, or pushed --max-events. Keep the
    file and --batch-size unchanged between runs; put refused lines, once fixed, in a file
    of their own. Exit status 1 when a line was refused or the push stopped.
    """
    if key is not None and not _KEY.fullmatch(key):
        _fail(
            f"--key must be 1 to {MAX_RUN_KEY} letters, digits or ._~:/@+=- (it goes in an HTTP header)"
        )
    chosen = file_format or detect_format(file)
    auth: tuple[str, str] | None = None
    if not token:
        login = user or typer.prompt("login")
        secret = password if password is not None else typer.prompt("password", hide_input=True)
        auth = (login, secret)
    counted = scan(file, chosen, digest=key is None)
    # 128 bits of the content's hash name it well enough
    run_key = key or f"push-{(counted.digest or '')[:32]}"
    options = PushOptions(
        url=url.rstrip("/"),
        run_key=run_key,
        batch_size=batch_size,
        concurrency=concurrency,
        retry_for=retry_for,
        max_events=max_events,
        field_names=(
            {field: name for name, field in SOAP_ATTRIBUTE_FIELDS.items()}
            if chosen is FileFormat.XML
            else {}
        ),
    )
    report = PushReport()
    pusher = FilePusher(options, auth=auth, token=token)
    total = min(counted.events, max_events) if max_events else counted.events
    with (
        _ids_file(ids) as out,
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("events"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,
        ) as progress,
    ):
        task = progress.add_task(f"pushing {escape(file.name)}", total=total or None)

        def on_outcomes(outcomes: Sequence[Outcome]) -> None:
            progress.advance(task, len(outcomes))
            progress.update(task, description=f"pushing {escape(file.name)}")
            if out is not None:
                out.writelines(
                    f"{o.line}\t{'' if o.id is None else o.id}\t{_one_line(o.refusal or '')}\n"
                    for o in outcomes
                )

        def on_retry(reason: str) -> None:
            progress.update(task, description=f"waiting: {escape(reason)}")

        items = read_items(file, chosen, queue)
        try:
            asyncio.run(pusher.push(items, report, on_outcomes=on_outcomes, on_retry=on_retry))
        except KeyboardInterrupt:
            report.stopped = "interrupted"
    _summarise(file, report, options, ids)


def _summarise(file: Path, report: PushReport, options: PushOptions, ids: Path | None) -> None:
    if report.stopped and report.acknowledged == 0 and report.refused == 0:
        # nothing happened (wrong password, wrong URL): the reason alone says it
        _fail(report.stopped)
    console.print(
        f"{escape(file.name)}: {report.read} events read, {report.stored} stored, "
        f"{report.replays} already stored (replays), {report.refused} refused "
        f"→ {options.url} (key {escape(options.run_key)})",
        highlight=False,
    )
    if report.read == 0 and report.refused == 0 and not report.stopped:
        what = "<rtEvent> or <batchEvent> element" if options.field_names else "event"
        console.print(f"no {what} in {escape(str(file))}: nothing to push", highlight=False)
    if report.first_id is not None:
        span = (
            f"id {report.first_id}"
            if report.first_id == report.last_id
            else f"ids {report.first_id} … {report.last_id}"
        )
        console.print(
            span + (f"; every line's outcome in {escape(str(ids))}" if ids else ""), highlight=False
        )
    if report.refusals:
        console.print("refused:", highlight=False)
        for refusal in report.refusals[:SHOWN_REFUSALS]:
            console.print(
                f"  line {refusal.line}: {escape(_one_line(refusal.refusal or ''))}",
                highlight=False,
            )
        if report.refused > SHOWN_REFUSALS:
            more = report.refused - SHOWN_REFUSALS
            where = f" (all in {escape(str(ids))})" if ids else " (--ids FILE lists them all)"
            console.print(f"  … and {more} more{where}", highlight=False)
    if report.limited:
        console.print(
            f"stopped after --max-events {options.max_events}; run again with the same key "
            "(without --max-events) to push the rest",
            highlight=False,
        )
    if report.stopped:
        err_console.print(
            f"[red]error:[/red] stopped: {escape(report.stopped)}; run the same command again "
            "to resume (nothing already stored is stored twice)",
            highlight=False,
        )
    if report.stopped or report.refused:
        raise typer.Exit(1)


@contextlib.contextmanager
def _ids_file(path: Path | None) -> Iterator[TextIO | None]:
    if path is None:
        yield None
        return
    with path.open("w", encoding="utf-8") as out:
        out.write("line\tid\trefusal\n")
        yield out


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(message: str) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(1)
