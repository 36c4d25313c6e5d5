"""The archiving service of a control instance (SPEC §4): where each execution instance's
archive stands, and a run on demand."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from msgcenter.archives import ArchiveState
from msgcenter.control.archiving.run import ArchiveRun, run_archive
from msgcenter.control.archiving.workflows import workflow_name
from msgcenter.settings import Settings
from msgcenter.store import archive as archive_store
from msgcenter.store import control_instances as instance_store
from msgcenter.store import workflows as workflow_store
from msgcenter.store.database import Database


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
    #: time of the newest archived queue-size sample
    stats_at: datetime | None
    #: the archiving workflow's state (running, paused, stopped, failed); None until an
    #: operator creates it
    workflow_state: str | None = None
    #: the folder of the instance (None: every folder's)
    folder: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowCreation:
    """What **Create the archiving workflow** did."""

    instance: str
    workflow: str
    #: False when it existed already (nothing changed)
    created: bool
    state: str


class ArchivingService:
    """The archives of the execution instances registered on one control instance."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        start_workflows: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._start_workflows = start_workflows

    @property
    def interval_seconds(self) -> float:
        """How often an archiving workflow archives its instance."""
        return self._settings.control.archive_interval_seconds

    async def create_workflow(self, name: str) -> WorkflowCreation:
        """Create and start ``mcSynch_<name>``, the archiving workflow of execution instance
        ``name`` (:class:`NotFoundError` if none is registered); says when it exists already."""
        workflow = workflow_name(name)

        def create() -> tuple[bool, str]:
            with self._db.write() as conn:
                instance_store.get(conn, name)
                created = workflow_store.create(conn, workflow, datetime.now(UTC))
                return created, workflow_store.states(conn)[workflow]

        created, state = await asyncio.to_thread(create)
        if created and self._start_workflows is not None:
            await self._start_workflows()
        return WorkflowCreation(name, workflow, created, state)

    def status(self) -> list[ArchiveStatus]:
        """Every registered execution instance's archive, by name."""
        return _status(self._db)

    async def run(self, name: str, *, wait_seconds: float = 0.0) -> ArchiveRun:
        """Archive execution instance ``name`` now (see
        :func:`~msgcenter.control.archiving.run.run_archive`); in a control server, its
        archiving workflow starts first if another process registered it."""
        if self._start_workflows is not None:
            await self._start_workflows()
        return await run_archive(self._db, self._settings, name, wait_seconds=wait_seconds)


def _status(db: Database) -> list[ArchiveStatus]:
    now = datetime.now(UTC)
    with db.read() as conn:
        instances = instance_store.list_all(conn)
        states = archive_store.states(conn)
        workflows = workflow_store.states(conn)
    found = []
    for instance in instances:
        state = states.get(instance.id) or ArchiveState.empty(instance.id)
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
                stats_at=state.stats_at,
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
                workflow_state=workflows.get(workflow_name(instance.name)),
                folder=instance.folder,
            )
        )
    return found
