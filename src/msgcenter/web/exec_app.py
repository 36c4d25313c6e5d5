"""The execution instance's ASGI application: intake (SOAP, REST), admin API, health, metrics, and
(by default) the technical workflows in the same process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from msgcenter import __version__
from msgcenter.auth.authenticator import Authenticator
from msgcenter.errors import MsgcenterError
from msgcenter.events.model import Queue
from msgcenter.execution.archive_export import ArchiveExport
from msgcenter.execution.events import EventQueries
from msgcenter.execution.identity import IdentityService
from msgcenter.execution.publications import PublicationService
from msgcenter.execution.tracking import TrackingRecorder
from msgcenter.intake import rest
from msgcenter.intake.committer import GroupCommitter
from msgcenter.intake.service import IntakeService
from msgcenter.intake.soap import SoapRouter
from msgcenter.logs import configure as configure_logging
from msgcenter.monitoring import metrics
from msgcenter.sending.email import DEVELOPMENT_SECRET
from msgcenter.settings import Settings, load_settings
from msgcenter.store.database import Database
from msgcenter.store.schema import require_current
from msgcenter.tracking import LinkSigner
from msgcenter.web import admin, archive_export, problems, tracking
from msgcenter.web.landing import add_landing_routes
from msgcenter.workflow_states import unready_workflows
from msgcenter.workflows.admin import WorkflowAdmin
from msgcenter.workflows.wakeup import Wakeup
from msgcenter.workflows.worker import REQUIRED_WORKFLOWS, Worker


def create_exec_app(settings: Settings, db: Database | None = None) -> FastAPI:
    """An execution instance on ``db`` (by default the database of ``settings``)."""
    database = db or Database(settings.database_url)
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
    intake = IntakeService(committer, settings.intake)
    authenticator = Authenticator(database, settings.security)
    soap = SoapRouter(intake, authenticator)
    events = EventQueries(database)
    workflows = WorkflowAdmin(
        database, on_change=worker.runner.note_state if worker is not None else None
    )
    queue_sizes = metrics.QueueSizeCollector(events.queue_sizes)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        require_current(database)
        committer.start()
        if worker is not None:
            await worker.start()
        try:
            yield
        finally:
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
    )
    app.state.authenticator = authenticator
    app.state.intake = intake
    app.state.events = events
    app.state.publications = PublicationService(database)
    app.state.identity = IdentityService(database)
    app.state.archive_export = ArchiveExport(database)
    app.state.tracking = TrackingRecorder(database)
    app.state.workflows = workflows
    app.state.link_signer = LinkSigner(
        settings.secret_key.get_secret_value() or DEVELOPMENT_SECRET, settings.tracking_base_url()
    )
    problems.install(app)
    # Plain Starlette routes: the SOAP endpoint needs none of FastAPI's parameter handling,
    # so its hot path skips FastAPI's dependency solving.
    app.add_route(
        "/nl/jsp/soaprouter.jsp",
        soap.route,
        methods=["POST"],
        name="soap_router",
        include_in_schema=False,
    )
    app.add_route("/nl/jsp/schemawsdl.jsp", soap.wsdl, methods=["GET"], include_in_schema=False)
    for router in (
        rest.push_router,
        rest.router,
        rest.sessions_router,
        admin.identity_router,
        admin.router,
        archive_export.router,
        tracking.router,
    ):
        app.include_router(router)

    add_landing_routes(app)

    @app.get(
        "/readyz",
        tags=["monitoring"],
        summary="Ready to serve: database reachable and the required workflows running",
    )
    async def readyz() -> Response:
        try:
            states = await asyncio.to_thread(workflows.list)
        except MsgcenterError as exc:
            return JSONResponse({"status": "unavailable", "database": exc.detail}, status_code=503)
        problems = unready_workflows(states, set(REQUIRED_WORKFLOWS), datetime.now(UTC))
        if problems:
            return JSONResponse(
                {"status": "unavailable", "database": "ok", "workflows": problems}, status_code=503
            )
        return JSONResponse({"status": "ready", "database": "ok", "workflows": "running"})

    @app.get("/metrics", tags=["monitoring"], summary="Prometheus metrics")
    async def metrics_page(_request: Request) -> Response:
        body, content_type = metrics.exposition([queue_sizes])
        return Response(body, media_type=content_type)

    return app


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from the file and ``MSGCENTER_*`` variables."""
    settings = load_settings()
    configure_logging(settings.logging)
    return create_exec_app(settings)
