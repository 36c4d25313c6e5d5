"""The control instance's archive API (``mc_admin``): where each execution instance's archive
stands, a run on demand, and the archived events with their history (SPEC §4)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from msgcenter.archives import MAX_SEARCH_PAGE, ArchivedEventDetail, ArchivedEventPage
from msgcenter.control.archiving.history import ArchivedEvents, EventSearch
from msgcenter.control.archiving.run import ArchiveRun
from msgcenter.control.archiving.service import ArchiveStatus, ArchivingService, WorkflowCreation
from msgcenter.control.folders import sees
from msgcenter.control.instances.api import IN_FOLDER
from msgcenter.errors import ConflictError
from msgcenter.operators import Right
from msgcenter.web.access import Admin, require
from msgcenter.web.params import RowId, UtcMoment
from msgcenter.web.problems import API_ERRORS, documented
from msgcenter.web.state import from_state

Archiving = Annotated[ArchivingService, Depends(from_state("archiving"))]
router = APIRouter(
    prefix="/api/v1/archives",
    tags=["archives"],
    dependencies=[Depends(require(Right.MC_ADMIN))],
    responses=API_ERRORS,
)


@router.get("", response_model=list[ArchiveStatus], summary="Archive state per execution instance")
def list_archives(archiving: Archiving, operator: Admin) -> Any:
    return [a for a in archiving.status() if sees(operator, a.folder)]


@router.post(
    "/{name}/workflow",
    status_code=201,
    response_model=WorkflowCreation,
    responses={
        200: {"model": WorkflowCreation, "description": "it exists already"},
        **documented(404),
    },
    summary="Create the archiving workflow (mcSynch_<name>) of an execution instance",
    description=(
        "Creates and starts the workflow that archives the instance every "
        "`control.archive_interval_seconds`; answers 200 with `created: false` when it "
        "exists already (its state is left as it is)."
    ),
    dependencies=IN_FOLDER,
)
async def create_workflow(name: str, archiving: Archiving) -> Response:
    done = await archiving.create_workflow(name)
    return Response(
        orjson.dumps(done),
        status_code=201 if done.created else 200,
        media_type="application/json",
    )


@router.post(
    "/{name}/run",
    response_model=ArchiveRun,
    summary="Archive an execution instance now",
    dependencies=IN_FOLDER,
    description=(
        "Answers when the run ends, with what it archived; a failed run answers 200 with "
        'outcome "failed" and the error (also shown by GET /api/v1/archives). '
        "When another run holds the archive (its workflow's, say), waits up to `wait` "
        "seconds for it to end, then 409."
    ),
    responses=documented(404, 409),
)
async def run_now(
    name: str,
    archiving: Archiving,
    wait: Annotated[
        float, Query(ge=0, le=600, description="seconds to wait for a run in progress")
    ] = 0.0,
) -> Any:
    run = await archiving.run(name, wait_seconds=wait)
    if run.outcome == "already running":
        raise _busy(run)
    return run


def _busy(run: ArchiveRun) -> ConflictError:
    until = run.held_until.isoformat(timespec="seconds") if run.held_until else "soon"
    return ConflictError(
        f"the archive of '{run.instance}' is already running",
        detail=f"another run holds the archive of '{run.instance}' until {until} at the latest",
    )


# -- the archived events ------------------------------------------------------------------------

History = Annotated[ArchivedEvents, Depends(from_state("history"))]
events_router = APIRouter(
    prefix="/api/v1/archive/events",
    tags=["archives"],
    dependencies=[Depends(require(Right.MC_ADMIN))],
    responses=API_ERRORS,
)


@dataclass(frozen=True, slots=True)
class SearchParameters:
    """What the archived events must match; times are ISO 8601 (without an offset: UTC)."""

    event_type: Annotated[str | None, Query(alias="type", description="event type")] = None
    status: Annotated[
        str | None,
        Query(
            description="sent, ignored, delivery_failed, not_taken_into_account or expired "
            "(or its code)"
        ),
    ] = None
    address: Annotated[
        str | None,
        Query(description="email address or phone number, exactly as the event carried it"),
    ] = None
    external_id: Annotated[str | None, Query(description="the event's external id")] = None
    start: Annotated[UtcMoment, Query(alias="from", description="created at or after")] = None
    end: Annotated[UtcMoment, Query(alias="to", description="created before")] = None
    instance: Annotated[str | None, Query(description="an execution instance's internal name")] = (
        None
    )
    limit: Annotated[
        int, Query(ge=1, le=MAX_SEARCH_PAGE, description="most events in the page")
    ] = 50
    cursor: Annotated[
        str | None, Query(description="`next` of the previous page, to get the following one")
    ] = None


Search = Annotated[SearchParameters, Depends()]


@events_router.get(
    "",
    response_model=ArchivedEventPage,
    summary="Search the archived events, newest first",
    description="Filters combine; an operator restricted to a folder sees its folder's events "
    "only. A page holds up to `limit` events; `next` (null on the last page) is the `cursor` "
    "of the following one.",
    responses=documented(404, 409),
)
async def search_events(history: History, operator: Admin, search: Search) -> Any:
    query = EventSearch(
        event_type=search.event_type,
        status=search.status,
        address=search.address,
        external_id=search.external_id,
        start=search.start,
        end=search.end,
        instance=search.instance,
        limit=search.limit,
        cursor=search.cursor,
    )
    return await asyncio.to_thread(history.search, query, operator)


@events_router.get(
    "/{instance}/{event_id}",
    response_model=ArchivedEventDetail,
    summary="One archived event with its delivery log, opens and clicks, and its timeline",
    description="`instance` is the execution instance's internal name (or its instance id, "
    "once it is no longer registered).",
    responses=documented(404),
)
async def archived_event(instance: str, event_id: RowId, history: History, operator: Admin) -> Any:
    return await asyncio.to_thread(history.event, instance, event_id, operator)
