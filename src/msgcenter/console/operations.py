"""The execution instance's console: its *Message Center* folder (the technical workflows with
start, pause and stop; the queues; what went through lately), live event search with
timelines, the quarantine with release, and the publications in force."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from msgcenter.console.route import ConsoleRoute
from msgcenter.console.web import Admin, User, redirect, render
from msgcenter.errors import InvalidInputError
from msgcenter.events.model import EventFilter, EventStatus, Queue, StoredEvent
from msgcenter.execution.events import EventQueries
from msgcenter.execution.operations import Operations
from msgcenter.execution.publications import PublicationService
from msgcenter.web.params import MAX_ROW_ID, RowId
from msgcenter.web.state import from_state
from msgcenter.workflow_states import ACTIONS
from msgcenter.workflows.admin import WorkflowAdmin

Workflows = Annotated[WorkflowAdmin, Depends(from_state("workflows"))]
Events = Annotated[EventQueries, Depends(from_state("events"))]
Ops = Annotated[Operations, Depends(from_state("operations"))]
Publications = Annotated[PublicationService, Depends(from_state("publications"))]
PAGE = 50

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


@router.get("/")
async def message_center(request: Request, user: User, workflows: Workflows, ops: Ops) -> Response:
    return render(request, "execution/home.html", **await _overview(workflows, ops))


@router.get("/overview")
async def overview_fragment(
    request: Request, user: User, workflows: Workflows, ops: Ops
) -> Response:
    """The workflows and queues, refreshed by htmx every few seconds."""
    return render(request, "execution/overview.html", **await _overview(workflows, ops))


@router.post("/workflows/{name}/{action}")
async def change_workflow(
    request: Request, name: str, action: str, user: Admin, workflows: Workflows, ops: Ops
) -> Response:
    if action not in ACTIONS:
        raise InvalidInputError(f"unknown action {action!r}")
    await asyncio.to_thread(workflows.act, name, action)
    if "hx-request" in request.headers:
        return render(request, "execution/overview.html", **await _overview(workflows, ops))
    return redirect("/console/", flash=f"workflow {name}: {ACTIONS[action]}")


@router.get("/events")
async def events_page(
    request: Request,
    user: User,
    events: Events,
    queue: str = "",
    type: str = "",  # noqa: A002 - the event field's name
    status: str = "",
    email: str = "",
    external_id: str = "",
    before: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
) -> Response:
    criteria = EventFilter(
        queue=Queue(queue) if queue in ("rt", "batch") else None,
        type=type.strip() or None,
        status=_status(status),
        email=email.strip() or None,
        external_id=external_id.strip() or None,
    )
    found = await asyncio.to_thread(
        events.search, criteria, user.operator, before_id=before, limit=PAGE + 1
    )
    context: dict[str, Any] = {
        "events": found[:PAGE],
        "more": found[PAGE - 1].id if len(found) > PAGE else None,
        "filters": {
            "queue": queue,
            "type": type,
            "status": status,
            "email": email,
            "external_id": external_id,
        },
        "statuses": [s.label for s in EventStatus],
    }
    fragment = "hx-request" in request.headers and "hx-boosted" not in request.headers
    return render(
        request, "execution/events_rows.html" if fragment else "execution/events.html", **context
    )


@router.get("/events/{event_id}")
async def event_page(
    request: Request, event_id: Annotated[int, Path(ge=1, le=2**63 - 1)], user: User, events: Events
) -> Response:
    stored = await asyncio.to_thread(events.get, event_id, user.operator)
    logs = await asyncio.to_thread(events.delivery_logs, event_id, user.operator)
    return render(request, "execution/event.html", event=stored, logs=logs, ctx=_shown_ctx(stored))


@router.get("/quarantine")
async def quarantine_page(
    request: Request,
    user: User,
    ops: Ops,
    address: str = "",
    all: bool = False,  # noqa: A002
) -> Response:
    entries = await asyncio.to_thread(
        ops.quarantine, address=address.strip() or None, active_only=not all
    )
    return render(request, "execution/quarantine.html", entries=entries, address=address, all=all)


@router.post("/quarantine/{entry_id}/release")
async def release(request: Request, entry_id: RowId, user: Admin, ops: Ops) -> Response:
    address = await asyncio.to_thread(ops.release, entry_id, user.operator.login)
    return redirect("/console/quarantine", flash=f"{address} released from quarantine")


@router.get("/publications")
async def publications_page(request: Request, user: Admin, publications: Publications) -> Response:
    found = await asyncio.to_thread(publications.active, user.operator)
    return render(request, "execution/publications.html", publications=found)


async def _overview(workflows: WorkflowAdmin, ops: Operations) -> dict[str, Any]:
    states, queues, throughput = await asyncio.gather(
        asyncio.to_thread(workflows.list),
        asyncio.to_thread(ops.queues),
        asyncio.to_thread(ops.throughput),
    )
    now = datetime.now(UTC)
    ages = {
        q.queue: (now - q.oldest_pending).total_seconds() if q.oldest_pending else None
        for q in queues
    }
    return {"workflows": states, "queues": queues, "ages": ages, "throughput": throughput}


def _status(text: str) -> EventStatus | None:
    if not text:
        return None
    try:
        return EventStatus.parse(text)
    except (KeyError, ValueError):
        raise InvalidInputError(f"unknown status {text!r}") from None


def _shown_ctx(stored: StoredEvent) -> str:
    if stored.ctx_format == "json":
        return orjson.dumps(orjson.loads(stored.ctx), option=orjson.OPT_INDENT_2).decode()
    return stored.ctx
