"""The execution instance's admin API (``mc_admin``): identity, publications and technical workflows.

The control instance tests the connection, assigns the instance id and
publishes through these routes; operators use them (or the CLI) to start,
pause and stop workflows.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from msgcenter import __version__
from msgcenter.auth.authenticator import Authenticator
from msgcenter.errors import NotFoundError, PermissionDeniedError
from msgcenter.operators import Operator, Right
from msgcenter.publications import (
    Publication,
    PublicationSpec,
    PublishedContent,
    compile_publication,
)
from msgcenter.store import instance_info
from msgcenter.store import publications as publication_store
from msgcenter.store import workflows as workflow_store
from msgcenter.store.database import Database
from msgcenter.web.credentials import operator_of

WORKFLOW_ACTIONS = {"start": "running", "pause": "paused", "stop": "stopped"}
INSTANCE_ID = r"^[A-Za-z0-9_.:-]{1,64}$"


class CallerOut(BaseModel):
    """The operator making the call."""

    login: str
    rights: list[str]
    folder: str | None


class InstanceOut(BaseModel):
    """Which instance answers, and who is asking (what "Test connection" reads)."""

    product: Literal["msgcenter"] = "msgcenter"
    role: Literal["execution"] = "execution"
    version: str
    instance_id: str | None = Field(description="assigned by the control instance; null until then")
    operator: CallerOut


class InstanceIdIn(BaseModel):
    """The instance id a control instance assigns ("Initialize connection")."""

    instance_id: str = Field(pattern=INSTANCE_ID)
    force: bool = Field(False, description="replace a different id already stored")


class PublicationOut(BaseModel):
    """One stored flavour of a publication."""

    id: int
    template: str
    event_type: str
    channel: int
    folder: str | None
    queue: Literal["rt", "batch"]
    version: int
    published_at: datetime
    content: PublishedContent


class WorkflowOut(BaseModel):
    """A technical workflow's state."""

    name: str
    state: str
    last_run: datetime | None
    last_error: str | None
    last_error_at: datetime | None


def publish(db: Database, spec: PublicationSpec, operator: Operator) -> list[Publication]:
    """Validate (compile every part) and store both flavours of ``spec`` for ``operator``'s folder."""
    operator.require(Right.MC_ADMIN)
    if operator.folder is not None:
        if spec.folder not in (None, operator.folder):
            raise PermissionDeniedError(
                f"operator '{operator.login}' is restricted to folder '{operator.folder}', not '{spec.folder}'"
            )
        spec = spec.model_copy(update={"folder": operator.folder})
    now = datetime.now(UTC)
    compile_publication(
        Publication.draft(spec)
    )  # raises TemplateSyntaxProblem with the part and line
    with db.write() as conn:
        return publication_store.put(conn, spec, now)


def admin_router(auth: Authenticator, db: Database) -> APIRouter:
    """Routes under ``/api/v1/admin``."""
    router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

    async def admin(request: Request) -> Operator:
        operator = await operator_of(auth, request)
        operator.require(Right.MC_ADMIN)
        return operator

    @router.get(
        "/instance",
        response_model=InstanceOut,
        summary="This instance's identity and the calling operator's rights (any operator)",
    )
    async def get_instance(request: Request) -> Any:
        # Any operator may ask, so that a control instance can tell a missing right
        # apart from wrong credentials.
        operator = await operator_of(auth, request)
        with db.read() as conn:
            assigned = instance_info.instance_id(conn)
        return _identity(operator, assigned)

    @router.put(
        "/instance",
        response_model=InstanceOut,
        summary="Store the instance id assigned by a control instance; 409 if another is stored",
    )
    async def put_instance(assigned: InstanceIdIn, request: Request) -> Any:
        operator = await admin(request)
        with db.write() as conn:
            instance_info.assign_instance_id(
                conn, assigned.instance_id, datetime.now(UTC), force=assigned.force
            )
        return _identity(operator, assigned.instance_id)

    @router.put(
        "/publications",
        status_code=201,
        response_model=list[PublicationOut],
        summary="Publish a template (both flavours); replaces its previous version",
    )
    async def put_publication(spec: PublicationSpec, request: Request) -> Any:
        operator = await admin(request)
        stored = await asyncio.to_thread(publish, db, spec, operator)
        return [_out(p) for p in stored]

    @router.get("/publications", response_model=list[PublicationOut], summary="Active publications")
    async def list_publications(request: Request) -> Any:
        operator = await admin(request)
        with db.read() as conn:
            found = publication_store.list_active(
                conn, operator.folder, any_folder=operator.folder is None
            )
        return [_out(p) for p in found]

    @router.delete("/publications/{template}", summary="Unpublish a template (both flavours)")
    async def delete_publication(
        template: str, request: Request, folder: str | None = None
    ) -> dict[str, int]:
        operator = await admin(request)
        target = operator.folder if operator.folder is not None else folder
        with db.write() as conn:
            retired = publication_store.remove(conn, template, target, datetime.now(UTC))
        if not retired:
            raise NotFoundError(
                f"no active publication of template '{template}'"
                + (f" in folder '{target}'" if target else "")
            )
        return {"retired": retired}

    @router.get(
        "/workflows",
        response_model=list[WorkflowOut],
        summary="Technical workflows and their state",
    )
    async def list_workflows(request: Request) -> Any:
        await admin(request)
        with db.read() as conn:
            return [asdict(s) for s in workflow_store.list_all(conn)]

    @router.post(
        "/workflows/{name}/{action}",
        response_model=WorkflowOut,
        summary="Start, pause or stop a workflow",
    )
    async def change_workflow(
        name: str, action: Literal["start", "pause", "stop"], request: Request
    ) -> Any:
        await admin(request)
        with db.write() as conn:
            workflow_store.set_state(conn, name, WORKFLOW_ACTIONS[action], datetime.now(UTC))
            return next(asdict(s) for s in workflow_store.list_all(conn) if s.name == name)

    return router


def _identity(operator: Operator, instance_id: str | None) -> InstanceOut:
    caller = CallerOut(login=operator.login, rights=sorted(operator.rights), folder=operator.folder)
    return InstanceOut(version=__version__, instance_id=instance_id, operator=caller)


def _out(publication: Publication) -> dict[str, Any]:
    return {
        "id": publication.id,
        "template": publication.template,
        "event_type": publication.event_type,
        "channel": int(publication.channel),
        "folder": publication.folder,
        "queue": publication.queue.value,
        "version": publication.version,
        "published_at": publication.published_at,
        "content": publication.content,
    }
