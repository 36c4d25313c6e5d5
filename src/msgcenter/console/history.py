"""The control instance's pages of archived events: a search over every execution instance's
archive (type, status, address, external id, period, instance), and each event's timeline with
its delivery log and tracking — through the service the archive API uses."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from msgcenter.console.route import ConsoleRoute
from msgcenter.console.web import Admin, render
from msgcenter.control.archiving.history import ArchivedEvents, EventSearch
from msgcenter.control.folders import sees
from msgcenter.control.instances.service import InstanceService
from msgcenter.events.model import EventStatus
from msgcenter.web.params import form_moment
from msgcenter.web.state import from_state

History = Annotated[ArchivedEvents, Depends(from_state("history"))]
Instances = Annotated[InstanceService, Depends(from_state("instances"))]
#: the statuses an archived event can have (final ones)
FINAL = [
    s.label for s in EventStatus if s not in (EventStatus.PENDING, EventStatus.PENDING_DELIVERY)
]
PAGE = 50

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


@router.get("/archive/events")
async def archived_events(  # noqa: PLR0913 - one parameter per filter of the form
    request: Request,
    user: Admin,
    history: History,
    instances: Instances,
    type: str = "",  # noqa: A002 - the event field's name
    status: str = "",
    address: str = "",
    external_id: str = "",
    start: str = "",
    end: str = "",
    instance: str = "",
    cursor: str = "",
) -> Response:
    filters = {
        "type": type.strip(),
        "status": status.strip(),
        "address": address.strip(),
        "external_id": external_id.strip(),
        "start": start.strip(),
        "end": end.strip(),
        "instance": instance.strip(),
    }
    query = EventSearch(
        event_type=filters["type"] or None,
        status=filters["status"] or None,
        address=filters["address"] or None,
        external_id=filters["external_id"] or None,
        start=form_moment(filters["start"], "from"),
        end=form_moment(filters["end"], "to"),
        instance=filters["instance"] or None,
        limit=PAGE,
        cursor=cursor or None,
    )
    page = await asyncio.to_thread(history.search, query, user.operator)
    registered = [
        i.name for i in await asyncio.to_thread(instances.list_all) if sees(user.operator, i.folder)
    ]
    return render(
        request,
        "control/archived_events.html",
        page=page,
        filters=filters,
        statuses=FINAL,
        instances=registered,
    )


@router.get("/archive/events/{instance}/{event_id}")
async def archived_event(
    request: Request,
    instance: str,
    event_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    user: Admin,
    history: History,
) -> Response:
    detail = await asyncio.to_thread(history.event, instance, event_id, user.operator)
    return render(request, "control/archived_event.html", detail=detail)
