"""The workflow runner through a database outage: every workflow records that it runs again as
soon as the database is back, including one whose rounds need no database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Connection, select

from msgcenter.errors import StoreUnavailableError
from msgcenter.store.database import Database
from msgcenter.store.tables import workflow
from msgcenter.workflows import runner as runner_module
from msgcenter.workflows.outages import StoreWatch
from msgcenter.workflows.runner import Workflow, WorkflowRunner


class FailingDatabase(Database):
    """A real database that refuses every connection while ``down`` is set (the outage)."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailableError("the database is unavailable (connection refused)")

    @contextmanager
    def write(self) -> Iterator[Connection]:
        self._check()
        with super().write() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        self._check()
        with super().read() as conn:
            yield conn

    def ping(self) -> None:
        self._check()
        super().ping()


class WaitingForTheDispatcher(Workflow):
    """A workflow whose rounds succeed without the database, as a processing workflow's do
    while it waits for the dispatcher to drain."""

    name = "rtEventsProcessing"

    async def run_once(self) -> float:
        return 0.02


def last_run(db: Database) -> datetime | None:
    with db.read() as conn:
        return conn.execute(
            select(workflow.c.last_run).where(workflow.c.name == WaitingForTheDispatcher.name)
        ).scalar_one()


def test_a_workflow_that_needs_no_database_records_its_run_as_soon_as_the_database_returns(
    database_url, monkeypatch
):
    """Its heartbeat, refused during the outage, is made again at the return, not a heartbeat
    interval later (the interval is made an hour once the outage has been met)."""
    db = FailingDatabase(database_url)
    monkeypatch.setattr(runner_module, "HEARTBEAT_SECONDS", 0.0)

    async def scenario() -> tuple[datetime, datetime | None]:
        watch = StoreWatch(db, probe_seconds=0.05)
        runner = WorkflowRunner(db, [WaitingForTheDispatcher()], watch)
        await runner.start()
        try:
            while last_run(db) is None:
                await asyncio.sleep(0.02)
            db.down = True
            deadline = time.monotonic() + 10
            while watch.available:  # a heartbeat met the outage
                assert time.monotonic() < deadline, "the outage was never noticed"
                await asyncio.sleep(0.02)
            monkeypatch.setattr(runner_module, "HEARTBEAT_SECONDS", 3600.0)
            db.down = False
            back = datetime.now(UTC)
            deadline = time.monotonic() + 10
            while (ran := last_run(db)) is None or ran.replace(tzinfo=UTC) <= back:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.02)
            return back, ran
        finally:
            await runner.stop()

    try:
        back, ran = asyncio.run(scenario())
    finally:
        db.dispose()
    assert ran is not None and ran.replace(tzinfo=UTC) > back, "no heartbeat after the return"
