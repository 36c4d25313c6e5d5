"""The control instance's ASGI application: design API, execution instances, publication, archives.

Its technical workflows (publication catch-up, one archiving workflow per
execution instance, archive cleanup, and the watch that starts the workflows
of instances registered by the CLI) run inside the web process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from msgcenter import __version__
from msgcenter.allocator import tune_allocator
from msgcenter.auth.admin import OperatorAdmin
from msgcenter.auth.authenticator import Authenticator
from msgcenter.auth.tokens import AccessTokens
from msgcenter.console.app import install_console
from msgcenter.control.archiving import api as archiving_api
from msgcenter.control.archiving.workflows import InstanceWatch, archiving_workflows
from msgcenter.control.design import api as design_api
from msgcenter.control.instances import api as instances_api
from msgcenter.control.publishing import api as publishing_api
from msgcenter.control.publishing.service import PublicationCatchUp
from msgcenter.control.reports import api as reports_api
from msgcenter.control.reports.metrics import ReportCollector
from msgcenter.control.services import control_services
from msgcenter.logs import configure as configure_logging
from msgcenter.settings import Settings, load_settings
from msgcenter.store.database import Database
from msgcenter.store.schema import require_current
from msgcenter.web import monitoring, oauth, problems, technical_accounts
from msgcenter.web.landing import add_landing_routes
from msgcenter.web.nul_guard import NulGuard
from msgcenter.workflows.runner import WorkflowRunner


def create_control_app(settings: Settings, db: Database | None = None) -> FastAPI:
    """A control instance on ``db`` (by default the database of ``settings``)."""
    tune_allocator()  # each web worker process builds its app
    database = db or Database.from_settings(settings)

    async def start_workflows() -> None:
        """Start the workflows of execution instances registered since the last call."""
        for workflow in await asyncio.to_thread(archiving_workflows, database, settings):
            await runner.add(workflow)

    services = control_services(database, settings, start_workflows=start_workflows)
    runner = WorkflowRunner(
        database,
        [
            PublicationCatchUp(services.publishing, settings.control.publication_retry_seconds),
            InstanceWatch(start_workflows),
        ],
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        require_current(database)
        await runner.start()
        await start_workflows()
        try:
            yield
        finally:
            await runner.stop()
            if db is None:
                database.dispose()

    app = FastAPI(
        title="msgcenter control instance",
        version=__version__,
        description="Design, preview and proof messages, publish them to execution instances, "
        "archive their history.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.database = database
    app.state.authenticator = Authenticator(
        database, settings.security, tokens=AccessTokens.from_settings(settings)
    )
    app.state.operators = OperatorAdmin(database)
    app.state.design = services.design
    app.state.publishing = services.publishing
    app.state.instances = services.instances
    app.state.archiving = services.archiving
    app.state.reports = services.reports
    app.state.history = services.history
    app.state.collectors = [
        ReportCollector(services.reports, settings.reports.metrics_cache_seconds)
    ]
    problems.install(app)
    app.add_middleware(NulGuard)
    for router in (design_api.router, instances_api.router, publishing_api.router):
        app.include_router(router)
    app.include_router(archiving_api.router)
    app.include_router(archiving_api.events_router)
    app.include_router(reports_api.router)
    app.include_router(oauth.router)
    app.include_router(technical_accounts.router)
    app.include_router(monitoring.control_router)
    add_landing_routes(app)
    install_console(app, "control", settings)

    return app


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from the file and ``MSGCENTER_*`` variables."""
    settings = load_settings()
    configure_logging(settings.logging)
    return create_control_app(settings)
