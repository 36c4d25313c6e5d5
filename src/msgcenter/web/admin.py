"""The execution instance's admin API: identity (any operator), publications and technical
workflows (``mc_admin``).

The control instance tests the connection, assigns the instance id and
publishes through these routes; operators use them (or the CLI) to start,
pause and stop workflows.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from msgcenter import __version__
from msgcenter.execution.identity import IdentityService
from msgcenter.execution.operations import Operations
from msgcenter.execution.publications import PublicationService
from msgcenter.operators import Operator, Right
from msgcenter.publications import Publication, PublicationSpec, PublishedContent
from msgcenter.web.access import Admin, Caller, require
from msgcenter.web.params import RowId
from msgcenter.web.problems import API_ERRORS, documented
from msgcenter.web.state import from_state
from msgcenter.workflows.admin import WorkflowAdmin

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


Identity = Annotated[IdentityService, Depends(from_state("identity"))]
Ops = Annotated[Operations, Depends(from_state("operations"))]
Publications = Annotated[PublicationService, Depends(from_state("publications"))]
Workflows = Annotated[WorkflowAdmin, Depends(from_state("workflows"))]

#: any operator may ask who the instance is, so that a control instance can tell a missing
#: right apart from wrong credentials
identity_router = APIRouter(
    prefix="/api/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require())],
    responses=API_ERRORS,
)
router = APIRouter(
    prefix="/api/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require(Right.MC_ADMIN))],
    responses=API_ERRORS,
)


@identity_router.get(
    "/instance",
    response_model=InstanceOut,
    summary="This instance's identity and the calling operator's rights (any operator)",
)
def get_instance(operator: Caller, identity: Identity) -> Any:
    return _identity_out(operator, identity.instance_id())


@router.put(
    "/instance",
    response_model=InstanceOut,
    summary="Store the instance id assigned by a control instance; 409 if another is stored",
    responses=documented(409),
)
def put_instance(assigned: InstanceIdIn, operator: Admin, identity: Identity) -> Any:
    identity.assign(assigned.instance_id, force=assigned.force)
    return _identity_out(operator, assigned.instance_id)


@router.put(
    "/publications",
    status_code=201,
    response_model=list[PublicationOut],
    summary="Publish a template (both flavours); replaces its previous version",
)
def put_publication(spec: PublicationSpec, operator: Admin, publications: Publications) -> Any:
    return [_publication_out(p) for p in publications.publish(spec, operator)]


@router.get("/publications", response_model=list[PublicationOut], summary="Active publications")
def list_publications(operator: Admin, publications: Publications) -> Any:
    return [_publication_out(p) for p in publications.active(operator)]


@router.delete(
    "/publications/{template}",
    summary="Unpublish a template (both flavours)",
    responses=documented(404),
)
def delete_publication(
    template: str, operator: Admin, publications: Publications, folder: str | None = None
) -> dict[str, int]:
    return {"retired": publications.unpublish(template, folder, operator)}


@router.get(
    "/workflows", response_model=list[WorkflowOut], summary="Technical workflows and their state"
)
def list_workflows(workflows: Workflows) -> Any:
    return [asdict(s) for s in workflows.list()]


@router.post(
    "/workflows/{name}/{action}",
    response_model=WorkflowOut,
    summary="Start, pause or stop a workflow",
    responses=documented(404),
)
def change_workflow(
    name: str, action: Literal["start", "pause", "stop"], workflows: Workflows
) -> Any:
    return asdict(workflows.act(name, action))


class QueueOut(BaseModel):
    """One queue now."""

    queue: Literal["rt", "batch"]
    pending_events: int
    pending_messages: int
    oldest_pending: datetime | None


class ThroughputOut(BaseModel):
    """What went through in a window."""

    seconds: float
    events_received: int
    messages_sent: int
    messages_failed: int


class QuarantineOut(BaseModel):
    """A quarantined (or released) address."""

    id: int
    address: str
    channel: str
    reason: str
    failure_type: str
    active: bool
    created: datetime
    last_modified: datetime


@router.get(
    "/queues", response_model=list[QueueOut], summary="Queue sizes and oldest waiting event"
)
def queues(ops: Ops) -> Any:
    return [asdict(q) for q in ops.queues()]


@router.get(
    "/throughput",
    response_model=dict[str, ThroughputOut],
    summary="Events received, messages sent and failed in the last hour and day",
)
def throughput(ops: Ops) -> Any:
    return {period: asdict(t) for period, t in ops.throughput().items()}


@router.get("/quarantine", response_model=list[QuarantineOut], summary="The quarantine")
def quarantine(
    ops: Ops,
    address: str | None = None,
    active: bool = True,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 200,
) -> Any:
    return [
        {**asdict(q), "channel": q.channel.label}
        for q in ops.quarantine(address=address, active_only=active, limit=limit)
    ]


@router.post(
    "/quarantine/{entry_id}/release",
    status_code=204,
    summary="Release a quarantined address",
    responses=documented(404),
)
def release_quarantine(entry_id: RowId, operator: Admin, ops: Ops) -> None:
    ops.release(entry_id, operator.login)


def _identity_out(operator: Operator, instance_id: str | None) -> InstanceOut:
    caller = CallerOut(login=operator.login, rights=sorted(operator.rights), folder=operator.folder)
    return InstanceOut(version=__version__, instance_id=instance_id, operator=caller)


def _publication_out(publication: Publication) -> dict[str, Any]:
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
