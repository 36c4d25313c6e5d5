"""The control instance's API for execution instances (external accounts) and publication.

``/api/v1/instances``: register, edit, list, enable, disable, "Test connection",
"Initialize connection". ``/api/v1/templates/{name}/publish|unpublish|publication``:
publication to every enabled execution instance and its state per instance.
Every route needs an operator with ``mc_admin`` on the control instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from msgcenter.auth.authenticator import Authenticator
from msgcenter.control import accounts
from msgcenter.control.accounts import AccountIn, AccountPatch
from msgcenter.control.publishing import Publisher
from msgcenter.operators import Operator, Right
from msgcenter.settings import Settings
from msgcenter.store.control_instances import ExecInstance
from msgcenter.store.database import Database
from msgcenter.web.credentials import operator_of


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


class InstanceStateOut(BaseModel):
    """A template on one execution instance: published, unpublished, or pending (with why)."""

    instance: str
    enabled: bool
    state: Literal["published", "unpublished", "pending"]
    version: int
    failure_reason: str | None
    last_attempt: datetime | None


class LogEntryOut(BaseModel):
    """One publication or unpublication."""

    action: Literal["publish", "unpublish"]
    version: int
    operator: str
    at: datetime


class PublicationStateOut(BaseModel):
    """A template's publication: wanted version, state per instance, log (newest first)."""

    template: str
    published: bool
    version: int
    instances: list[InstanceStateOut]
    log: list[LogEntryOut]


def instances_router(
    db: Database,
    auth: Authenticator,
    settings: Settings,
    *,
    on_change: Callable[[], Awaitable[None]],
) -> APIRouter:
    """Routes under ``/api/v1/instances`` and the publication routes."""
    router = APIRouter(prefix="/api/v1")
    publisher = Publisher(db, settings)

    async def admin(request: Request) -> Operator:
        operator = await operator_of(auth, request)
        operator.require(Right.MC_ADMIN)
        return operator

    async def now_usable(instance: ExecInstance) -> None:
        # A new or re-enabled instance gets its archiving workflow and, at once,
        # what has been published so far (what fails stays pending for the catch-up).
        await on_change()
        await publisher.catch_up(instance=instance.name)

    @router.post(
        "/instances",
        status_code=201,
        response_model=InstanceOut,
        tags=["instances"],
        summary="Register an execution instance",
    )
    async def add_instance(new: AccountIn, request: Request) -> Any:
        await admin(request)
        added = await asyncio.to_thread(accounts.register, db, settings, new)
        if added.enabled:
            await now_usable(added)
        return _out(added)

    @router.get(
        "/instances",
        response_model=list[InstanceOut],
        tags=["instances"],
        summary="Registered execution instances",
    )
    async def list_instances(request: Request) -> Any:
        await admin(request)
        return [_out(i) for i in await asyncio.to_thread(accounts.list_all, db)]

    @router.get(
        "/instances/{name}",
        response_model=InstanceOut,
        tags=["instances"],
        summary="One execution instance",
    )
    async def get_instance(name: str, request: Request) -> Any:
        await admin(request)
        return _out(await asyncio.to_thread(accounts.get, db, name))

    @router.patch(
        "/instances/{name}",
        response_model=InstanceOut,
        tags=["instances"],
        summary="Change an execution instance's label, URL, credentials, archiving or folder",
    )
    async def change_instance(name: str, patch: AccountPatch, request: Request) -> Any:
        await admin(request)
        return _out(await asyncio.to_thread(accounts.change, db, settings, name, patch))

    @router.post(
        "/instances/{name}/test",
        response_model=ConnectionReportOut,
        tags=["instances"],
        summary="Test connection: reachability, credentials, mc_admin, folder, database",
    )
    async def test_instance(name: str, request: Request) -> Any:
        await admin(request)
        instance = await asyncio.to_thread(accounts.get, db, name)
        report = await accounts.check_connection(instance, settings)
        return ConnectionReportOut(
            instance=report.instance,
            ok=report.ok,
            failure=report.failure,
            checks=[CheckOut(step=c.step, ok=c.ok, detail=c.detail) for c in report.checks],
        )

    @router.post(
        "/instances/{name}/initialize",
        response_model=InstanceOut,
        tags=["instances"],
        summary="Initialize connection: give the execution instance its unique instance id",
    )
    async def initialize_instance(name: str, request: Request, force: bool = False) -> Any:
        await admin(request)
        return _out(await accounts.initialize(db, settings, name, force=force))

    async def set_enabled(name: str, enabled: bool, request: Request) -> InstanceOut:
        await admin(request)
        changed = await asyncio.to_thread(accounts.set_enabled, db, name, enabled)
        if changed.enabled:
            await now_usable(changed)
        return _out(changed)

    @router.post(
        "/instances/{name}/enable",
        response_model=InstanceOut,
        tags=["instances"],
        summary="Enable an execution instance; it gets what was published meanwhile",
    )
    async def enable_instance(name: str, request: Request) -> Any:
        return await set_enabled(name, True, request)

    @router.post(
        "/instances/{name}/disable",
        response_model=InstanceOut,
        tags=["instances"],
        summary="Disable an execution instance: no publication reaches it",
    )
    async def disable_instance(name: str, request: Request) -> Any:
        return await set_enabled(name, False, request)

    @router.post(
        "/templates/{name}/publish",
        response_model=PublicationStateOut,
        tags=["publication"],
        summary="Publish a new version of a template to every enabled execution instance",
    )
    async def publish(name: str, request: Request) -> Any:
        operator = await admin(request)
        return await publisher.publish(name, operator.login)

    @router.post(
        "/templates/{name}/unpublish",
        response_model=PublicationStateOut,
        tags=["publication"],
        summary="Unpublish a template from every enabled execution instance",
    )
    async def unpublish(name: str, request: Request) -> Any:
        operator = await admin(request)
        return await publisher.unpublish(name, operator.login)

    @router.get(
        "/templates/{name}/publication",
        response_model=PublicationStateOut,
        tags=["publication"],
        summary="A template's publication state per execution instance, and its log",
    )
    async def publication(name: str, request: Request) -> Any:
        await admin(request)
        return await asyncio.to_thread(publisher.state, name)

    return router


def _out(instance: ExecInstance) -> InstanceOut:
    return InstanceOut(
        name=instance.name,
        label=instance.label,
        url=instance.url,
        login=instance.login,
        enabled=instance.enabled,
        archive_method=instance.archive_method,  # type: ignore[arg-type]
        database_url_set=instance.database_url_encrypted is not None,
        folder=instance.folder,
        instance_id=instance.instance_id,
        created=instance.created,
        updated=instance.updated,
    )
