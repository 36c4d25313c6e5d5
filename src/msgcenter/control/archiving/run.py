"""One archiving run of one execution instance: pull what changed since the watermark, page by page.

A run holds the instance's lease (``archive_state.lease_until``, taken with a
conditional UPDATE) so that a second run finds it busy instead of doing the
same work; correctness does not rest on it, since the import is idempotent
and never moves a watermark back. Pages come from the execution instance's
admin API (``web``) or from its database (``database``), through the same
export query and the same checks; the next page is fetched while the
current one is imported. Each page is committed with the watermark that
covers it, so a run killed half-way resumes from its last page. The report
aggregates move with each page (``store/reports.py``); a run first builds
them from the archived rows when they are not built yet (after the upgrade
that added them). Queue-size samples are pulled last, since their own
watermark; an execution instance too old to export them is archived without.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

import structlog
from sqlalchemy import Connection

from msgcenter.archives import (
    STATS_FIELDS,
    ArchivePageError,
    ArchiveState,
    Cursor,
    EventPage,
    QuarantinePage,
    RowPage,
    StatsPage,
    TrackingPage,
    checked_event_page,
    checked_quarantine_page,
    checked_stats_page,
    checked_tracking_page,
    decode_event_page,
    decode_quarantine_page,
    decode_stats_page,
    decode_tracking_page,
    transpose,
)
from msgcenter.control.credentials import cipher
from msgcenter.control.exec_client import ExecClient, ExecInstanceError, Failure, client_for
from msgcenter.errors import ConflictError, MsgcenterError, StoreUnavailableError
from msgcenter.instances import ExecInstance
from msgcenter.settings import Settings
from msgcenter.store import archive as archive_store
from msgcenter.store import control_instances as instance_store
from msgcenter.store import reports as report_store
from msgcenter.store.database import Database

log = structlog.get_logger(__name__)

#: each run re-reads this far behind its watermark: an execution instance's transaction
#: stamps rows before it commits, so rows may appear a little behind rows already taken
OVERLAP = timedelta(seconds=60)
#: a run's lease covers this many call timeouts, and is renewed with every page
LEASE_TIMEOUTS = 3

Outcome = Literal["complete", "failed", "already running"]
#: a page of rows pulled since a watermark of their own (quarantine changes, tracking logs)
P = TypeVar("P", bound=RowPage)


@dataclass(slots=True)
class ArchiveRun:
    """What one run did."""

    instance: str
    method: str
    outcome: Outcome = "complete"
    pages: int = 0
    #: events pulled, including those re-read in the overlap or archived before
    events: int = 0
    #: events archived for the first time
    new_events: int = 0
    delivery_logs: int = 0
    quarantine: int = 0
    #: tracking logs archived for the first time
    tracking_logs: int = 0
    #: queue-size samples archived for the first time
    stats_samples: int = 0
    watermark_at: datetime | None = None
    watermark_id: int = 0
    seconds: float = 0.0
    error: str | None = None
    #: until when another run holds the archive (outcome "already running")
    held_until: datetime | None = None


class PageSource(Protocol):
    """Where pages come from: the execution instance's API or its database."""

    async def events(self, after: Cursor | None, limit: int) -> EventPage: ...

    async def quarantine(self, after: Cursor | None, limit: int) -> QuarantinePage: ...

    async def tracking(self, after: Cursor | None, limit: int) -> TrackingPage: ...

    async def stats(self, after: Cursor | None, limit: int) -> StatsPage: ...


class WebSource:
    """Pages from ``GET /api/v1/admin/archive``; decoded and checked off the event loop."""

    def __init__(self, client: ExecClient, folder: str | None) -> None:
        self._client = client
        self._folder = folder

    async def events(self, after: Cursor | None, limit: int) -> EventPage:
        answer = await self._client.request(
            "GET", "/api/v1/admin/archive", params=self._params(after, limit), expect={200}
        )
        return await asyncio.to_thread(decode_event_page, answer.content)

    async def quarantine(self, after: Cursor | None, limit: int) -> QuarantinePage:
        answer = await self._client.request(
            "GET",
            "/api/v1/admin/archive/quarantine",
            params=self._params(after, limit),
            expect={200},
        )
        return await asyncio.to_thread(decode_quarantine_page, answer.content)

    async def tracking(self, after: Cursor | None, limit: int) -> TrackingPage:
        answer = await self._client.request(
            "GET",
            "/api/v1/admin/archive/tracking",
            params=self._params(after, limit),
            expect={200},
        )
        return await asyncio.to_thread(decode_tracking_page, answer.content)

    async def stats(self, after: Cursor | None, limit: int) -> StatsPage:
        answer = await self._client.request(
            "GET",
            "/api/v1/admin/archive/stats",
            params=self._params(after, limit),
            expect={200, 404},
        )
        if answer.status_code == 404:
            # an execution instance from before the stats export: no samples to archive
            return StatsPage(transpose(STATS_FIELDS, []))
        return await asyncio.to_thread(decode_stats_page, answer.content)

    def _params(self, after: Cursor | None, limit: int) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params.update(after_at=after[0].isoformat(), after_id=after[1])
        if self._folder is not None:
            params["folder"] = self._folder
        return params


class DatabaseSource:
    """Pages read from the execution instance's database with the export queries themselves."""

    def __init__(self, name: str, db: Database, folder: str | None) -> None:
        self._name = name
        self._db = db
        self._folder = folder

    async def events(self, after: Cursor | None, limit: int) -> EventPage:
        def read() -> EventPage:
            with self._reading() as conn:
                page = archive_store.export_events(conn, after, limit, self._folder)
            return checked_event_page(page)

        return await asyncio.to_thread(read)

    async def quarantine(self, after: Cursor | None, limit: int) -> QuarantinePage:
        def read() -> QuarantinePage:
            with self._reading() as conn:
                page = archive_store.export_quarantine(conn, after, limit, self._folder)
            return checked_quarantine_page(page)

        return await asyncio.to_thread(read)

    async def tracking(self, after: Cursor | None, limit: int) -> TrackingPage:
        def read() -> TrackingPage:
            with self._reading() as conn:
                page = archive_store.export_tracking(conn, after, limit, self._folder)
            return checked_tracking_page(page)

        return await asyncio.to_thread(read)

    async def stats(self, after: Cursor | None, limit: int) -> StatsPage:
        def read() -> StatsPage:
            with self._reading() as conn:
                page = archive_store.export_stats(conn, after, limit, self._folder)
            return checked_stats_page(page)

        return await asyncio.to_thread(read)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        # say that it is the execution instance's database, not this instance's, that failed
        try:
            with self._db.read() as conn:
                yield conn
        except StoreUnavailableError as exc:
            raise ExecInstanceError(
                self._name, Failure.UNREACHABLE, f"cannot read its database: {exc.detail}"
            ) from exc


@contextlib.asynccontextmanager
async def page_source(instance: ExecInstance, settings: Settings) -> AsyncIterator[PageSource]:
    """The page source of ``instance``'s archive method, with its credentials decrypted."""
    if instance.archive_method != "database":
        async with client_for(instance, settings) as client:
            yield WebSource(client, instance.folder)
        return
    if not instance.database_url_encrypted:
        raise ConflictError(
            f"execution instance '{instance.name}' has no database URL",
            detail="it archives with the database method: set its database URL",
        )
    url = cipher(settings).decrypt(
        instance.database_url_encrypted,
        what=f"the database URL of execution instance '{instance.name}'",
    )
    database = Database(url, pool_size=2)
    try:
        yield DatabaseSource(instance.name, database, instance.folder)
    finally:
        database.dispose()


async def run_archive(
    db: Database, settings: Settings, name: str, *, wait_seconds: float = 0.0
) -> ArchiveRun:
    """Archive what execution instance ``name`` changed since the last run.

    Returns outcome "already running" when another run holds the archive (after
    waiting up to ``wait_seconds`` for it), and "failed" with the error (also
    recorded in the archive's state) when the instance, a page or a store
    failed; pages committed before a failure stay archived.
    """
    instance = await asyncio.to_thread(_instance, db, name)
    if not instance.enabled:
        raise ConflictError(f"execution instance '{name}' is disabled")
    lease = timedelta(seconds=LEASE_TIMEOUTS * settings.control.instance_timeout_seconds)
    run = ArchiveRun(instance=name, method=instance.archive_method)
    held = await _take_lease(db, instance.id, lease, wait_seconds)
    if held is not None:
        run.outcome, run.held_until = "already running", held
        return run
    started = time.monotonic()
    log.info("archive run started", action="archive.started", instance=name)
    try:
        if instance.instance_id is None:
            raise ConflictError(
                f"execution instance '{name}' has no instance id",
                detail="initialize its connection first, so that its archived history "
                "is told apart from other instances'",
            )
        async with page_source(instance, settings) as source:
            await _pull(db, settings, instance, source, run, lease)
    except MsgcenterError as exc:
        run.outcome = "failed"
        run.error = exc.message if exc.detail == exc.message else f"{exc.message}: {exc.detail}"
    except BaseException as exc:
        # release the lease and say why the run ended before passing the exception on
        run.outcome = "failed"
        run.error = (
            "interrupted: the process is stopping"
            if isinstance(exc, asyncio.CancelledError)
            else f"unexpected {type(exc).__name__}: {exc}"
        )
        await asyncio.shield(asyncio.to_thread(_finish, db, instance.id, run.error))
        raise
    run.seconds = round(time.monotonic() - started, 3)
    state = await asyncio.to_thread(_finish, db, instance.id, run.error)
    run.watermark_at, run.watermark_id = state.watermark_at, state.watermark_id
    log.info(
        "archive run ended",
        action="archive.failed" if run.error else "archive.complete",
        instance=name,
        events=run.events,
        new_events=run.new_events,
        pages=run.pages,
        seconds=run.seconds,
        error=run.error,
    )
    return run


async def _pull(
    db: Database,
    settings: Settings,
    instance: ExecInstance,
    source: PageSource,
    run: ArchiveRun,
    lease: timedelta,
) -> None:
    assert instance.instance_id is not None
    size = settings.control.archive_page_size
    state = await asyncio.to_thread(_state, db, instance.id)
    deliveries = archive_store.DeliveryIds(instance.instance_id)
    if not state.reports_built:
        await asyncio.to_thread(_build_reports, db, instance)
    after = _rewound(state.watermark)
    fetching = asyncio.ensure_future(source.events(after, size))
    try:
        while True:
            page = await fetching
            cursor = page.cursor()
            full = len(page) >= size
            if full:
                _check_progress(after, cursor)
                fetching = asyncio.ensure_future(source.events(cursor, size))
            run.new_events += await asyncio.to_thread(
                _import_events, db, instance.id, page, deliveries, lease
            )
            run.pages += 1
            run.events += len(page)
            run.delivery_logs += len(page.delivery_logs["id"])
            if not full:
                break
            after = cursor
    finally:
        # a page fetched ahead is dropped when its predecessor could not be imported
        fetching.cancel()
        with contextlib.suppress(BaseException):
            await fetching
    run.quarantine += await _pull_rows(
        state.quarantine_at,
        source.quarantine,
        lambda p: _import_quarantine(db, instance, p, lease),
        size,
    )
    run.tracking_logs += await _pull_rows(
        state.tracking_at, source.tracking, lambda p: _import_tracking(db, instance, p, lease), size
    )
    run.stats_samples += await _pull_rows(
        state.stats_at, source.stats, lambda p: _import_stats(db, instance, p, lease), size
    )


async def _pull_rows(
    mark: datetime | None,
    fetch: Callable[[Cursor | None, int], Awaitable[P]],
    store: Callable[[P], int],
    size: int,
) -> int:
    """Pull pages of rows since ``mark`` (re-reading the overlap) until a short page, storing
    each off the event loop; returns the sum of what ``store`` counted."""
    after = _rewound(None if mark is None else (mark, 0))
    counted = 0
    while True:
        page = await fetch(after, size)
        counted += await asyncio.to_thread(store, page)
        if len(page) < size:
            return counted
        cursor = page.cursor()
        _check_progress(after, cursor)
        after = cursor


def _rewound(mark: Cursor | None) -> Cursor | None:
    return None if mark is None else (mark[0] - OVERLAP, 0)


def _check_progress(after: Cursor | None, cursor: Cursor | None) -> None:
    # a full page that does not move past its cursor would be asked for again and again
    if cursor is None or (after is not None and cursor <= after):
        raise ArchivePageError("a full page does not move past the cursor it was asked from")


def _instance(db: Database, name: str) -> ExecInstance:
    with db.read() as conn:
        return instance_store.get(conn, name)


def _state(db: Database, exec_instance_id: int) -> ArchiveState:
    with db.read() as conn:
        return archive_store.states(conn)[exec_instance_id]


async def _take_lease(
    db: Database, exec_instance_id: int, lease: timedelta, wait_seconds: float
) -> datetime | None:
    """None once the lease is ours; else until when another run holds it."""
    deadline = time.monotonic() + wait_seconds

    def take() -> datetime | None:
        now = datetime.now(UTC)
        with db.write() as conn:
            if archive_store.take_lease(conn, exec_instance_id, now, now + lease):
                return None
            return archive_store.states(conn)[exec_instance_id].lease_until

    while True:
        held = await asyncio.to_thread(take)
        if held is None or time.monotonic() >= deadline:
            return held
        await asyncio.sleep(min(0.5, max(deadline - time.monotonic(), 0)))


def _import_events(
    db: Database,
    exec_instance_id: int,
    page: EventPage,
    deliveries: archive_store.DeliveryIds,
    lease: timedelta,
) -> int:
    # one transaction: the page's rows and the watermark that covers them
    now = datetime.now(UTC)
    with db.write() as conn:
        new = archive_store.upsert_page(conn, page, deliveries, now)
        archive_store.record_page(conn, exec_instance_id, page.cursor(), new, now + lease)
    return new


def _import_quarantine(
    db: Database, instance: ExecInstance, page: QuarantinePage, lease: timedelta
) -> int:
    assert instance.instance_id is not None
    now = datetime.now(UTC)
    with db.write() as conn:
        archive_store.import_quarantine(conn, instance.id, instance.instance_id, page, now + lease)
    return len(page)


def _import_tracking(
    db: Database, instance: ExecInstance, page: TrackingPage, lease: timedelta
) -> int:
    assert instance.instance_id is not None
    now = datetime.now(UTC)
    with db.write() as conn:
        return archive_store.import_tracking(
            conn, instance.id, instance.instance_id, page, now + lease
        )


def _import_stats(db: Database, instance: ExecInstance, page: StatsPage, lease: timedelta) -> int:
    assert instance.instance_id is not None
    now = datetime.now(UTC)
    with db.write() as conn:
        return archive_store.import_stats(
            conn, instance.id, instance.instance_id, page, now + lease
        )


def _build_reports(db: Database, instance: ExecInstance) -> None:
    assert instance.instance_id is not None
    started = time.monotonic()
    with db.write() as conn:
        report_store.rebuild(conn, instance.id, instance.instance_id)
    log.info(
        "report aggregates built from the archive",
        action="archive.reports_built",
        instance=instance.name,
        seconds=round(time.monotonic() - started, 3),
    )


def _finish(db: Database, exec_instance_id: int, error: str | None) -> ArchiveState:
    with db.write() as conn:
        archive_store.finish_run(conn, exec_instance_id, datetime.now(UTC), error)
        return archive_store.states(conn)[exec_instance_id]
