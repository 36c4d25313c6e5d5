"""The archiving workflows of a control instance (SPEC §4).

The archiving workflow of an execution instance, ``mcSynch_<name>``, is created
by an operator (**Create the archiving workflow**, as in the model product); it
runs an archive every ``control.archive_interval_seconds`` (counted from the
last run, whoever started it) while its instance is enabled.
``archiveCleanup`` purges archived data past ``control.archive_retention_days``;
``instanceWatch`` starts the workflows that another process (the CLI) created
or whose instance it enabled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from msgcenter.control.archiving.run import run_archive
from msgcenter.errors import MsgcenterError, NotFoundError
from msgcenter.settings import Settings
from msgcenter.store import archive as archive_store
from msgcenter.store import control_instances as instance_store
from msgcenter.store import workflows as workflow_store
from msgcenter.store.database import Database
from msgcenter.workflows.runner import Workflow

#: archived rows deleted per table and transaction by the cleanup
PURGE_BATCH = 5_000
CLEANUP = "archiveCleanup"
#: how often an idle archiving workflow looks whether its instance became usable
IDLE_CHECK_SECONDS = 5.0


def workflow_name(instance: str) -> str:
    """The archiving workflow of execution instance ``instance``."""
    return f"mcSynch_{instance}"


class ArchiveFailedError(MsgcenterError):
    """An archive run ended in error (the workflow runner records it and retries with backoff)."""

    code = "archive-failed"


class ArchiveWorkflow(Workflow):
    """Archives one execution instance every interval; idle while it is disabled, gone or not initialized."""

    required = False

    def __init__(self, db: Database, settings: Settings, instance: str) -> None:
        super().__init__()
        self.name = workflow_name(instance)
        self.instance = instance
        self._db = db
        self._settings = settings

    async def run_once(self) -> float:
        interval = self._settings.control.archive_interval_seconds
        due_in = await asyncio.to_thread(self._due_in, interval)
        if due_in is None:
            return min(interval, IDLE_CHECK_SECONDS)
        if due_in > 0:
            return due_in
        run = await run_archive(self._db, self._settings, self.instance)
        if run.outcome == "failed":
            raise ArchiveFailedError(f"archive of '{self.instance}' failed", detail=run.error)
        return interval

    def _due_in(self, interval: float) -> float | None:
        """Seconds until the next run is due (0: now); None while the instance is disabled, gone
        or not initialized yet."""
        with self._db.read() as conn:
            try:
                instance = instance_store.get(conn, self.instance)
            except NotFoundError:
                return None
            if not instance.enabled or instance.instance_id is None:
                return None
            state = archive_store.states(conn).get(instance.id)
        # after a failure the runner's backoff decides when to try again
        if state is None or state.last_run is None or state.last_error is not None:
            return 0.0
        elapsed = (datetime.now(UTC) - state.last_run).total_seconds()
        return max(interval - elapsed, 0.0)


class ArchiveCleanup(Workflow):
    """Purges archived events, delivery logs and deliveries past the retention, in batches."""

    name = CLEANUP
    required = False

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__()
        self._db = db
        self._settings = settings

    async def run_once(self) -> float:
        more = await asyncio.to_thread(self.purge)
        return 0 if more else self._settings.control.archive_interval_seconds

    def purge(self) -> bool:
        """Delete one batch; True when a batch was full (more may remain)."""
        before = datetime.now(UTC) - timedelta(days=self._settings.control.archive_retention_days)
        with self._db.write() as conn:
            purged = archive_store.purge(conn, before, PURGE_BATCH)
        return (
            max(purged.events, purged.delivery_logs, purged.tracking_logs, purged.stats_samples)
            >= PURGE_BATCH
        )


class InstanceWatch(Workflow):
    """Starts the workflows of execution instances registered or re-enabled by another process
    (the CLI) while this control instance runs."""

    name = "instanceWatch"
    required = False

    def __init__(self, start_new: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self._start_new = start_new

    async def run_once(self) -> float:
        await self._start_new()
        return IDLE_CHECK_SECONDS


def archiving_workflows(db: Database, settings: Settings) -> list[Workflow]:
    """The archiving workflow of each enabled execution instance that has one created, plus
    archive cleanup."""
    with db.read() as conn:
        instances = instance_store.list_all(conn, enabled_only=True)
        created = workflow_store.states(conn)
    workflows: list[Workflow] = [
        ArchiveWorkflow(db, settings, i.name) for i in instances if workflow_name(i.name) in created
    ]
    return [*workflows, ArchiveCleanup(db, settings)]
