"""The monitoring endpoints of both instances (SPEC §3.10): ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client.registry import Collector
from starlette.responses import Response

from msgcenter.errors import MsgcenterError
from msgcenter.monitoring import metrics
from msgcenter.store.database import Database
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
)
async def exec_readyz(request: Request) -> Response:
    workflows = cast(WorkflowAdmin, request.app.state.workflows)
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


@control_router.get("/readyz", name="readyz", summary="Ready to serve: database reachable")
async def control_readyz(request: Request) -> Response:
    database = cast(Database, request.app.state.database)
    try:
        await asyncio.to_thread(database.ping)
    except MsgcenterError as exc:
        return JSONResponse({"status": "unavailable", "database": exc.detail}, status_code=503)
    return JSONResponse({"status": "ready", "database": "ok"})


@exec_router.get("/metrics", summary="Prometheus metrics")
@control_router.get("/metrics", summary="Prometheus metrics")
async def metrics_page(request: Request) -> Response:
    extra = cast(list[Collector], getattr(request.app.state, "collectors", []))
    body, content_type = metrics.exposition(extra)
    return Response(body, media_type=content_type)
