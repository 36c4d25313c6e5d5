"""The control instance's archive API (``mc_admin``): where each execution instance's archive
stands, and a run on demand (SPEC §4)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from msgcenter.control.archiving.run import ArchiveRun
from msgcenter.control.archiving.service import ArchiveStatus, ArchivingService
from msgcenter.errors import ConflictError
from msgcenter.operators import Right
from msgcenter.web.access import require
from msgcenter.web.state import from_state

Archiving = Annotated[ArchivingService, Depends(from_state("archiving"))]
router = APIRouter(
    prefix="/api/v1/archives",
    tags=["archives"],
    dependencies=[Depends(require(Right.MC_ADMIN))],
)


@router.get("", response_model=list[ArchiveStatus], summary="Archive state per execution instance")
def list_archives(archiving: Archiving) -> Any:
    return archiving.status()


@router.post(
    "/{name}/run",
    response_model=ArchiveRun,
    summary="Archive an execution instance now",
    description=(
        "Answers when the run ends, with what it archived; a failed run answers 200 with "
        'outcome "failed" and the error (also shown by GET /api/v1/archives). '
        "When another run holds the archive (its workflow's, say), waits up to `wait` "
        "seconds for it to end, then 409."
    ),
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
