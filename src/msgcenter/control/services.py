"""The services of a control instance, wired together once for the web application, the CLI and
the console: design, publishing, execution instances and archiving."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from msgcenter.control.archiving.history import ArchivedEvents
from msgcenter.control.archiving.service import ArchivingService
from msgcenter.control.design.service import DesignService
from msgcenter.control.instances.service import InstanceService
from msgcenter.control.publishing.service import PublishingService
from msgcenter.control.reports.service import ReportsService
from msgcenter.instances import ExecInstance
from msgcenter.settings import Settings
from msgcenter.store.database import Database


@dataclass(frozen=True, slots=True)
class ControlServices:
    """Every service of one control instance, on one database."""

    design: DesignService
    publishing: PublishingService
    instances: InstanceService
    archiving: ArchivingService
    #: the reports over the archive's aggregates
    reports: ReportsService
    #: the archived events: search, and one event's history
    history: ArchivedEvents


def control_services(
    db: Database,
    settings: Settings,
    *,
    start_workflows: Callable[[], Awaitable[None]] | None = None,
) -> ControlServices:
    """The services on ``db``; ``start_workflows`` (the server's) starts the archiving workflows
    of instances registered or enabled since it last ran."""
    design = DesignService(db, settings)
    publishing = PublishingService(db, settings, design)

    async def usable(_instance: ExecInstance) -> None:
        if start_workflows is not None:
            await start_workflows()

    return ControlServices(
        design=design,
        publishing=publishing,
        instances=InstanceService(db, settings, publishing, on_usable=usable),
        archiving=ArchivingService(db, settings, start_workflows=start_workflows),
        reports=ReportsService(db, settings),
        history=ArchivedEvents(db),
    )
