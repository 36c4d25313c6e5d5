"""The execution instance's ASGI application: intake (SOAP, REST), admin API, health, metrics, and
(by default) the technical workflows in the same process."""

from __future__ import annotations

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
from msgcenter.intake.committer import GroupCommitter
from msgcenter.intake.rest import rest_router
from msgcenter.intake.service import IntakeService
from msgcenter.intake.soap import SoapRouter
from msgcenter.logs import configure as configure_logging
from msgcenter.monitoring import metrics
from msgcenter.sending.email import DEVELOPMENT_SECRET
from msgcenter.settings import Settings, load_settings
from msgcenter.store import events as event_store
from msgcenter.store import workflows as workflow_store
from msgcenter.store.database import Database
from msgcenter.store.schema import require_current
from msgcenter.tracking import LinkSigner
from msgcenter.web import problems
from msgcenter.web.admin import admin_router
from msgcenter.web.archive_export import archive_export_router
from msgcenter.web.landing import add_landing_routes
from msgcenter.web.tracking import tracking_router
from msgcenter.workflows.runner import unready_workflows
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

    def read_queue_sizes() -> dict[tuple[str, int], int]:
        with database.read() as conn:
            return event_store.queue_sizes(conn)

    queue_sizes = metrics.QueueSizeCollector(read_queue_sizes)

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
    app.include_router(rest_router(intake, authenticator, database))
    app.include_router(admin_router(authenticator, database))
    app.include_router(archive_export_router(authenticator, database))
    app.include_router(
        tracking_router(
            database,
            LinkSigner(
                settings.secret_key.get_secret_value() or DEVELOPMENT_SECRET,
                settings.tracking_base_url(),
            ),
        )
    )

    add_landing_routes(app)

    @app.get(
        "/readyz",
        tags=["monitoring"],
        summary="Ready to serve: database reachable and the required workflows running",
    )
    async def readyz() -> Response:
        try:
            with database.read() as conn:
                states = workflow_store.list_all(conn)
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
