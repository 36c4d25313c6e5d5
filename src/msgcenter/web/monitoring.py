"""The monitoring endpoints of both instances (SPEC §3.10): ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client.registry import Collector
from starlette.responses import Response

from msgcenter.errors import MsgcenterError
from msgcenter.monitoring import metrics
from msgcenter.store.database import Database
from msgcenter.web.problems import STORE_RETRY_AFTER_SECONDS, server_errors
from msgcenter.workflow_states import REQUIRED_WORKFLOWS, unready_workflows
from msgcenter.workflows.admin import WorkflowAdmin

#: an execution instance's: its database and its required workflows
exec_router = APIRouter(tags=["monitoring"])
#: a control instance's: its database
control_router = APIRouter(tags=["monitoring"])


@exec_router.get(
    "/readyz",
    name="readyz",
    summary="Ready to serve: database reachable and the required workflows running",
    description="The body also says whether each channel's relay can be reached (`relays`, "
    "when the workflows run in this process); a relay outage leaves the instance ready, "
    "since events are still accepted and wait to be sent.",
)
async def exec_readyz(request: Request) -> Response:
    workflows = cast(WorkflowAdmin, request.app.state.workflows)
    relays = cast(Callable[[], dict[str, str]] | None, getattr(request.app.state, "relays", None))
    extra = {"relays": relays()} if relays is not None else {}
    try:
        states = await asyncio.to_thread(workflows.list)
    except MsgcenterError as exc:
        return _database_unavailable(request, exc, extra)
    problems = unready_workflows(states, set(REQUIRED_WORKFLOWS), datetime.now(UTC))
    if problems:
        return JSONResponse(
            {"status": "unavailable", "database": "ok", "workflows": problems, **extra},
            status_code=503,
        )
    return JSONResponse({"status": "ready", "database": "ok", "workflows": "running", **extra})


@control_router.get("/readyz", name="readyz", summary="Ready to serve: database reachable")
async def control_readyz(request: Request) -> Response:
    database = cast(Database, request.app.state.database)
    try:
        await asyncio.to_thread(database.ping)
    except MsgcenterError as exc:
        return _database_unavailable(request, exc, {})
    return JSONResponse({"status": "ready", "database": "ok"})


def _database_unavailable(
    request: Request, exc: MsgcenterError, extra: Mapping[str, object]
) -> Response:
    """503 for a probe: the driver's message (the database's host and port) goes to the log,
    not to whoever can reach the probe."""
    server_errors.note(exc.code, request.url.path, exc.detail)
    return JSONResponse(
        {"status": "unavailable", "database": "unavailable", **extra},
        status_code=503,
        headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
    )


@exec_router.get("/metrics", summary="Prometheus metrics")
@control_router.get("/metrics", summary="Prometheus metrics")
async def metrics_page(request: Request) -> Response:
    extra = cast(list[Collector], getattr(request.app.state, "collectors", []))
    # collectors may read the database: never on the loop that serves intake
    body, content_type = await asyncio.to_thread(metrics.exposition, extra)
    return Response(body, media_type=content_type)
