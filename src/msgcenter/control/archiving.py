"""Archiving of execution instances' history on the control instance (SPEC §4): its workflows and API.

One workflow per enabled execution instance, ``mcSynch_<name>``, runs an
archive every ``control.archive_interval_seconds`` (counted from the last run,
whoever started it); ``archiveCleanup`` purges archived data past
``control.archive_retention_days``. ``POST /api/v1/archives/{name}/run`` runs
one now; ``GET /api/v1/archives`` shows where each archive stands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from msgcenter.auth.authenticator import Authenticator
from msgcenter.control.archiver import ArchiveRun, run_archive
from msgcenter.errors import ConflictError, MsgcenterError, NotFoundError
from msgcenter.operators import Right
from msgcenter.settings import Settings
from msgcenter.store import archive as archive_store
from msgcenter.store import control_instances as instance_store
from msgcenter.store.database import Database
from msgcenter.web.credentials import operator_of
from msgcenter.workflows.runner import Workflow, WorkflowRunner

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
        return max(purged.events, purged.delivery_logs, purged.tracking_logs) >= PURGE_BATCH


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
    """One archiving workflow (``mcSynch_<name>``) per enabled execution instance, plus archive cleanup."""
    with db.read() as conn:
        instances = instance_store.list_all(conn, enabled_only=True)
    workflows: list[Workflow] = [ArchiveWorkflow(db, settings, i.name) for i in instances]
    return [*workflows, ArchiveCleanup(db, settings)]


@dataclass(frozen=True, slots=True)
class ArchiveStatus:
    """Where the archive of one execution instance stands."""

    instance: str
    enabled: bool
    method: str
    workflow: str
    #: the keyset watermark: (last_modified, id) of the newest archived event
    watermark_at: datetime | None
    watermark_id: int
    #: last_modified of the newest archived quarantine change
    quarantine_at: datetime | None
    #: how far behind the archive is: seconds since the last successful run ended, which
    #: archived everything final until it started (None before one); an idle execution
    #: instance's old watermark does not count as lag
    lag_seconds: float | None
    last_run: datetime | None
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    #: a run holds the archive now
    running: bool
    #: events archived for the first time, over all runs
    archived_events: int
    #: created time of the newest archived tracking log
    tracking_at: datetime | None


def archive_status(db: Database) -> list[ArchiveStatus]:
    """Every registered execution instance's archive, by name."""
    now = datetime.now(UTC)
    with db.read() as conn:
        instances = instance_store.list_all(conn)
        states = archive_store.states(conn)
    found = []
    for instance in instances:
        state = states.get(instance.id) or archive_store.ArchiveState.empty(instance.id)
        found.append(
            ArchiveStatus(
                instance=instance.name,
                enabled=instance.enabled,
                method=instance.archive_method,
                workflow=workflow_name(instance.name),
                watermark_at=state.watermark_at,
                watermark_id=state.watermark_id,
                quarantine_at=state.quarantine_at,
                tracking_at=state.tracking_at,
                lag_seconds=(
                    None
                    if state.last_success is None
                    else round((now - state.last_success).total_seconds(), 3)
                ),
                last_run=state.last_run,
                last_success=state.last_success,
                last_error=state.last_error,
                last_error_at=state.last_error_at,
                running=state.lease_until is not None and state.lease_until > now,
                archived_events=state.archived_events,
            )
        )
    return found


def archive_router(
    db: Database, auth: Authenticator, settings: Settings, runner: WorkflowRunner
) -> APIRouter:
    """Routes under ``/api/v1/archives``."""
    router = APIRouter(prefix="/api/v1/archives", tags=["archives"])

    async def admin(request: Request) -> None:
        operator = await operator_of(auth, request)
        operator.require(Right.MC_ADMIN)

    @router.get(
        "", response_model=list[ArchiveStatus], summary="Archive state per execution instance"
    )
    async def list_archives(request: Request) -> Any:
        await admin(request)
        return await asyncio.to_thread(archive_status, db)

    @router.post(
        "/{name}/run",
        response_model=ArchiveRun,
        summary="Archive an execution instance now",
        description=(
            "Answers when the run ends, with what it archived; a failed run answers 200 with "
            'outcome "failed" and the error (also shown by GET /api/v1/archives). '
            "When another run holds the archive (its workflow's, say), waits up to `wait` "
            "seconds for it to end, then 409."
        ),
    )
    async def run_now(
        name: str,
        request: Request,
        wait: Annotated[
            float, Query(ge=0, le=600, description="seconds to wait for a run in progress")
        ] = 0.0,
    ) -> Any:
        await admin(request)
        if workflow_name(name) not in runner.workflows:
            # registered by another process (the CLI): its workflow starts here too
            for workflow in await asyncio.to_thread(archiving_workflows, db, settings):
                await runner.add(workflow)
        run = await run_archive(db, settings, name, wait_seconds=wait)
        if run.outcome == "already running":
            raise _busy(run)
        return run

    return router


def _busy(run: ArchiveRun) -> ConflictError:
    until = run.held_until.isoformat(timespec="seconds") if run.held_until else "soon"
    return ConflictError(
        f"the archive of '{run.instance}' is already running",
        detail=f"another run holds the archive of '{run.instance}' until {until} at the latest",
    )
