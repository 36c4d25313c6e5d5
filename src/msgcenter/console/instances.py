"""The control instance's dashboard and its pages for execution instances (the model product's
external accounts): register and edit one, Test connection with the precise failure,
Initialize connection, Create the archiving workflow, the archive's state and a run now."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import SecretStr, ValidationError
from starlette.datastructures import FormData
from starlette.responses import Response

from msgcenter.console.route import ConsoleRoute
from msgcenter.console.web import Admin, redirect, render
from msgcenter.control.archiving.service import ArchiveStatus, ArchivingService
from msgcenter.control.folders import check_sees, sees
from msgcenter.control.instances.service import AccountIn, AccountPatch, InstanceService
from msgcenter.control.reports.service import ReportsService
from msgcenter.errors import InvalidInputError
from msgcenter.reports import Level
from msgcenter.web.state import from_state

Instances = Annotated[InstanceService, Depends(from_state("instances"))]
Archiving = Annotated[ArchivingService, Depends(from_state("archiving"))]
Reports = Annotated[ReportsService, Depends(from_state("reports"))]

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


async def _in_folder(name: str, user: Admin, instances: Instances) -> None:
    """An execution instance of another folder is, to an operator of a folder, one that does
    not exist."""
    found = await asyncio.to_thread(instances.get, name)
    check_sees(user.operator, found.folder, "execution instance", name)


#: on every page and action of one instance
IN_FOLDER = [Depends(_in_folder)]


@router.get("/")
async def dashboard(request: Request, user: Admin, instances: Instances) -> Response:
    found = [
        i for i in await asyncio.to_thread(instances.list_all) if sees(user.operator, i.folder)
    ]
    return render(request, "control/dashboard.html", instances=found)


@router.get("/instances/{name}/card", dependencies=IN_FOLDER)
async def card(
    request: Request,
    name: str,
    user: Admin,
    instances: Instances,
    archiving: Archiving,
    reports: Reports,
) -> Response:
    """One instance on the dashboard, asked of it now (htmx, refreshed)."""
    overview = await instances.overview(name)
    indicators = await asyncio.to_thread(reports.indicators)
    crossed = [i.check for i in indicators if i.instance == name and i.check.level is not Level.OK]
    return render(
        request,
        "control/instance_card.html",
        overview=overview,
        archive=await asyncio.to_thread(_archive_of, archiving, name),
        crossed=sorted(crossed, key=lambda c: (c.level is not Level.ALERT, c.indicator)),
        window_hours=reports.window_hours,
    )


@router.get("/instances")
async def instances_page(request: Request, user: Admin, instances: Instances) -> Response:
    found = [
        i for i in await asyncio.to_thread(instances.list_all) if sees(user.operator, i.folder)
    ]
    return render(request, "control/instances.html", instances=found)


@router.post("/instances")
async def add_instance(request: Request, user: Admin, instances: Instances) -> Response:
    form = await request.form()
    new = _account(AccountIn, form, user, enabled=True)
    added, pending = await instances.add(new)
    flash = f"execution instance {added.name} registered"
    if pending:
        flash += f"; {pending} publication(s) pending (it will be tried again)"
    return redirect(f"/console/instances/{added.name}", flash=flash)


@router.get("/instances/{name}", dependencies=IN_FOLDER)
async def instance_page(
    request: Request, name: str, user: Admin, instances: Instances, archiving: Archiving
) -> Response:
    instance = await asyncio.to_thread(instances.get, name)
    archive = await asyncio.to_thread(_archive_of, archiving, name)
    return render(
        request,
        "control/instance.html",
        instance=instance,
        archive=archive,
        archive_interval=archiving.interval_seconds,
    )


@router.post("/instances/{name}", dependencies=IN_FOLDER)
async def edit_instance(request: Request, name: str, user: Admin, instances: Instances) -> Response:
    form = await request.form()
    patch = _account(AccountPatch, form, user)
    await asyncio.to_thread(instances.change, name, patch)
    return redirect(f"/console/instances/{name}", flash="saved")


@router.post("/instances/{name}/test", dependencies=IN_FOLDER)
async def test_connection(
    request: Request, name: str, user: Admin, instances: Instances
) -> Response:
    report = await instances.check_connection(name)
    return render(request, "control/connection_report.html", report=report)


@router.post("/instances/{name}/initialize", dependencies=IN_FOLDER)
async def initialize(name: str, user: Admin, instances: Instances) -> Response:
    done = await instances.initialize(name, force=False)
    return redirect(f"/console/instances/{name}", flash=f"instance id {done.instance_id}")


@router.post("/instances/{name}/enable", dependencies=IN_FOLDER)
async def enable(name: str, user: Admin, instances: Instances) -> Response:
    await instances.set_enabled(name, True)
    return redirect(f"/console/instances/{name}", flash="enabled")


@router.post("/instances/{name}/disable", dependencies=IN_FOLDER)
async def disable(name: str, user: Admin, instances: Instances) -> Response:
    await instances.set_enabled(name, False)
    return redirect(f"/console/instances/{name}", flash="disabled")


@router.post("/instances/{name}/archiving-workflow", dependencies=IN_FOLDER)
async def create_archiving_workflow(name: str, user: Admin, archiving: Archiving) -> Response:
    done = await archiving.create_workflow(name)
    flash = (
        f"archiving workflow {done.workflow} created and started"
        if done.created
        else f"archiving workflow {done.workflow} exists already ({done.state})"
    )
    return redirect(f"/console/instances/{name}", flash=flash)


@router.post("/instances/{name}/archive", dependencies=IN_FOLDER)
async def run_archive(name: str, user: Admin, archiving: Archiving) -> Response:
    run = await archiving.run(name, wait_seconds=30)
    if run.outcome == "complete":
        flash = f"archived {run.new_events} new events ({run.events} read)"
    else:
        flash = f"archive {run.outcome}: {run.error or ''}"
    return redirect(f"/console/instances/{name}", flash=flash)


def _archive_of(archiving: ArchivingService, name: str) -> ArchiveStatus | None:
    return next((a for a in archiving.status() if a.instance == name), None)


def _account(model: Any, form: FormData, user: Any, **fixed: Any) -> Any:
    """An instance registration (or its changes) from the form; fields left empty are left
    out, so that an edit keeps them (a password is never shown, so never re-sent)."""
    values: dict[str, Any] = {}
    for name in ("name", "label", "url", "login", "archive_method", "folder"):
        text = form.get(name)
        if isinstance(text, str) and text.strip():
            values[name] = text.strip()
    for secret in ("password", "database_url"):
        text = form.get(secret)
        if isinstance(text, str) and text:
            values[secret] = SecretStr(text)
    if user.operator.folder:
        values["folder"] = user.operator.folder
    if model is AccountIn:
        values.setdefault("label", values.get("name", ""))
    try:
        return model.model_validate({**values, **fixed})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(
            "invalid execution instance", detail=f"{where}: {first['msg']}"
        ) from None
