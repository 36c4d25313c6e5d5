"""The execution instance's ASGI application: intake (SOAP, REST), admin API, health, metrics, and
(by default) the technical workflows in the same process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from msgcenter import __version__
from msgcenter.allocator import tune_allocator
from msgcenter.auth.admin import OperatorAdmin
from msgcenter.auth.authenticator import Authenticator
from msgcenter.auth.tokens import AccessTokens
from msgcenter.console.app import install_console
from msgcenter.events.model import Queue
from msgcenter.execution.archive_export import ArchiveExport
from msgcenter.execution.bounce_reports import BounceReports
from msgcenter.execution.events import EventQueries
from msgcenter.execution.identity import IdentityService
from msgcenter.execution.mirror import MirrorPages
from msgcenter.execution.operations import Operations
from msgcenter.execution.publications import PublicationService
from msgcenter.execution.tracking import TrackingRecorder
from msgcenter.execution.unsubscriptions import Unsubscriptions
from msgcenter.execution.webhooks import WebhookAdmin
from msgcenter.intake import rest
from msgcenter.intake.committer import GroupCommitter
from msgcenter.intake.in_force import PublishedRoutes
from msgcenter.intake.service import IntakeService
from msgcenter.intake.soap import SoapRouter
from msgcenter.logs import configure as configure_logging
from msgcenter.monitoring import metrics
from msgcenter.sending.bounces import build_receiver
from msgcenter.sending.email import DEVELOPMENT_SECRET
from msgcenter.settings import Settings, load_settings
from msgcenter.store.database import Database
from msgcenter.store.schema import require_current
from msgcenter.tracking import LinkSigner
from msgcenter.web import (
    admin,
    archive_export,
    bounce_reports,
    mirror,
    monitoring,
    oauth,
    problems,
    technical_accounts,
    tracking,
    unsubscribe,
    webhooks,
)
from msgcenter.web.landing import add_landing_routes
from msgcenter.web.nul_guard import NulGuard
from msgcenter.workflows.admin import WorkflowAdmin
from msgcenter.workflows.wakeup import Wakeup
from msgcenter.workflows.worker import Worker


def create_exec_app(
    settings: Settings,
    db: Database | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """An execution instance on ``db`` (by default the database of ``settings``); ``clock``
    times its logon throttle and credential caches (a test's clock decides their delays)."""
    tune_allocator()  # each web worker process builds its app
    database = db or Database.from_settings(settings)
    wakeup = Wakeup()

    def on_commit(queues: set[Queue], events: int, seconds: float) -> None:
        metrics.record_group_commit(events, seconds)
        wakeup.notify(queues)

    committer = GroupCommitter(
        database,
        max_events=settings.intake.group_commit_max_events,
        delay_seconds=settings.intake.group_commit_delay_us / 1e6,
        on_commit=on_commit,
    )
    worker = (
        Worker(settings, database, wakeup) if settings.processing.workflows_in_web_process else None
    )
    # every web worker process listens on the bounce port (SO_REUSEPORT shares it among them)
    bounces = (
        build_receiver(settings, database, reuse_port=True) if settings.bounces.enabled else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        require_current(database)
        committer.start()
        if bounces is not None:
            await bounces.start()  # before the workflows: a port taken stops the start here
        if worker is not None:
            await worker.start()
        try:
            yield
        finally:
            if bounces is not None:
                await bounces.stop()
            if worker is not None:
                await worker.stop()
            committer.stop()
            if db is None:
                database.dispose()

    app = FastAPI(
        title="msgcenter execution instance",
        version=__version__,
        description="Event intake (SOAP compatibility and REST) of a msgcenter execution instance.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    _add_services(
        app,
        settings,
        database,
        IntakeService(committer, settings.intake, PublishedRoutes(database)),
        worker,
        clock,
    )
    problems.install(app)
    app.add_middleware(NulGuard)
    # Plain Starlette routes: the SOAP endpoint needs none of FastAPI's parameter handling,
    # so its hot path skips FastAPI's dependency solving.
    soap = SoapRouter(app.state.intake, app.state.authenticator)
    app.add_route(
        "/nl/jsp/soaprouter.jsp",
        soap.route,
        methods=["POST"],
        name="soap_router",
        include_in_schema=False,
    )
    app.add_route("/nl/jsp/schemawsdl.jsp", soap.wsdl, methods=["GET"], include_in_schema=False)
    rest.add_push_route(app)
    for router in (
        rest.router,
        rest.sessions_router,
        admin.identity_router,
        admin.router,
        bounce_reports.router,
        archive_export.router,
        tracking.router,
        mirror.router,
        unsubscribe.router,
        oauth.router,
        technical_accounts.router,
        webhooks.router,
        monitoring.exec_router,
    ):
        app.include_router(router)
    add_landing_routes(app)
    install_console(app, "execution", settings)
    return app


def _add_services(
    app: FastAPI,
    settings: Settings,
    database: Database,
    intake: IntakeService,
    worker: Worker | None,
    clock: Callable[[], float],
) -> None:
    """The services the routes find in ``app.state``."""
    events = EventQueries(database)
    app.state.authenticator = Authenticator(
        database, settings.security, tokens=AccessTokens.from_settings(settings), clock=clock
    )
    app.state.intake = intake
    app.state.events = events
    app.state.publications = PublicationService(database, settings.smtp)
    app.state.identity = IdentityService(database)
    app.state.archive_export = ArchiveExport(database)
    app.state.tracking = TrackingRecorder(database)
    app.state.unsubscriptions = Unsubscriptions(database)
    app.state.webhooks = WebhookAdmin(database, settings.webhooks)
    app.state.operators = OperatorAdmin(database)
    app.state.operations = Operations(database)
    app.state.bounce_reports = BounceReports(database)
    app.state.workflows = WorkflowAdmin(
        database, on_change=worker.runner.note_state if worker is not None else None
    )
    app.state.link_signer = LinkSigner(
        settings.secret_key.get_secret_value() or DEVELOPMENT_SECRET, settings.tracking_base_url()
    )
    app.state.mirror_pages = MirrorPages(database, app.state.link_signer)
    app.state.collectors = [metrics.QueueSizeCollector(app.state.operations.sampled_queue_sizes)]
    if worker is not None:
        dispatcher = worker.dispatcher
        app.state.relays = lambda: {
            channel.label: state for channel, state in dispatcher.relays.items()
        }


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from the file and ``MSGCENTER_*`` variables."""
    settings = load_settings()
    configure_logging(settings.logging)
    return create_exec_app(settings)
