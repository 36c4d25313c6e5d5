"""The control instance's API for execution instances (external accounts, ``mc_admin``):
register, edit, list, enable, disable, "Test connection", "Initialize connection"."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from msgcenter.control.folders import check_own_folder, check_sees, sees
from msgcenter.control.instances.service import AccountIn, AccountPatch, InstanceService
from msgcenter.instances import ExecInstance
from msgcenter.operators import Right
from msgcenter.web.access import Admin, require
from msgcenter.web.problems import API_ERRORS, documented
from msgcenter.web.state import from_state


class InstanceOut(BaseModel):
    """A registered execution instance; its password and database URL are never shown."""

    name: str
    label: str
    url: str
    login: str
    enabled: bool
    archive_method: Literal["web", "database"]
    database_url_set: bool
    folder: str | None
    instance_id: str | None
    created: datetime
    updated: datetime


class CheckOut(BaseModel):
    """One step of "Test connection": reach, credentials, rights, folder, database."""

    step: str
    ok: bool
    detail: str


class ConnectionReportOut(BaseModel):
    """What "Test connection" found; ``failure`` is the first failed step's explanation."""

    instance: str
    ok: bool
    failure: str | None
    checks: list[CheckOut]


Instances = Annotated[InstanceService, Depends(from_state("instances"))]


def instance_in_folder(name: str, instances: Instances, operator: Admin) -> None:
    """An execution instance of another folder is, to an operator of a folder, one that does
    not exist (404)."""
    check_sees(operator, instances.get(name).folder, "execution instance", name)


#: on every route of one instance
IN_FOLDER = [Depends(instance_in_folder)]
router = APIRouter(
    prefix="/api/v1/instances",
    tags=["instances"],
    dependencies=[Depends(require(Right.MC_ADMIN))],
    responses=API_ERRORS,
)


@router.post(
    "",
    status_code=201,
    response_model=InstanceOut,
    summary="Register an execution instance",
    responses=documented(409),
)
async def add_instance(new: AccountIn, instances: Instances, operator: Admin) -> Any:
    check_own_folder(operator, new.folder)
    added, _pending = await instances.add(new)
    return instance_out(added)


@router.get("", response_model=list[InstanceOut], summary="Registered execution instances")
def list_instances(instances: Instances, operator: Admin) -> Any:
    return [instance_out(i) for i in instances.list_all() if sees(operator, i.folder)]


@router.get(
    "/{name}",
    response_model=InstanceOut,
    summary="One execution instance",
    dependencies=IN_FOLDER,
    responses=documented(404),
)
def get_instance(name: str, instances: Instances) -> Any:
    return instance_out(instances.get(name))


@router.patch(
    "/{name}",
    response_model=InstanceOut,
    summary="Change an execution instance's label, URL, credentials, archiving or folder",
    dependencies=IN_FOLDER,
    responses=documented(404),
)
def change_instance(name: str, patch: AccountPatch, instances: Instances, operator: Admin) -> Any:
    if "folder" in patch.model_fields_set:
        check_own_folder(operator, patch.folder)
    return instance_out(instances.change(name, patch))


@router.post(
    "/{name}/test",
    response_model=ConnectionReportOut,
    summary="Test connection: reachability, credentials, mc_admin, folder, database",
    dependencies=IN_FOLDER,
    responses=documented(404),
)
async def test_instance(name: str, instances: Instances) -> Any:
    report = await instances.check_connection(name)
    return ConnectionReportOut(
        instance=report.instance,
        ok=report.ok,
        failure=report.failure,
        checks=[CheckOut(step=c.step, ok=c.ok, detail=c.detail) for c in report.checks],
    )


@router.post(
    "/{name}/initialize",
    response_model=InstanceOut,
    summary="Initialize connection: give the execution instance its unique instance id",
    dependencies=IN_FOLDER,
    responses=documented(404, 409, 502),
)
async def initialize_instance(name: str, instances: Instances, force: bool = False) -> Any:
    return instance_out(await instances.initialize(name, force=force))


@router.post(
    "/{name}/enable",
    response_model=InstanceOut,
    summary="Enable an execution instance; it gets what was published meanwhile",
    dependencies=IN_FOLDER,
    responses=documented(404),
)
async def enable_instance(name: str, instances: Instances) -> Any:
    changed, _pending = await instances.set_enabled(name, True)
    return instance_out(changed)


@router.post(
    "/{name}/disable",
    response_model=InstanceOut,
    summary="Disable an execution instance: no publication reaches it",
    dependencies=IN_FOLDER,
    responses=documented(404),
)
async def disable_instance(name: str, instances: Instances) -> Any:
    changed, _pending = await instances.set_enabled(name, False)
    return instance_out(changed)


def instance_out(instance: ExecInstance) -> InstanceOut:
    """What the API shows of a registered instance (never its secrets)."""
    return InstanceOut(
        name=instance.name,
        label=instance.label,
        url=instance.url,
        login=instance.login,
        enabled=instance.enabled,
        archive_method=cast(Literal["web", "database"], instance.archive_method),
        database_url_set=instance.database_url_encrypted is not None,
        folder=instance.folder,
        instance_id=instance.instance_id,
        created=instance.created,
        updated=instance.updated,
    )
