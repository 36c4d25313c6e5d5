"""The control instance's publication API (``mc_admin``): publish and unpublish a template on
every enabled execution instance, and its state per instance with its log (SPEC §4)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from msgcenter.control.design.api import template_in_folder
from msgcenter.control.publishing.service import PublishingService
from msgcenter.operators import Right
from msgcenter.web.access import Admin, require
from msgcenter.web.problems import API_ERRORS, documented
from msgcenter.web.state import from_state


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


Publishing = Annotated[PublishingService, Depends(from_state("publishing"))]
router = APIRouter(
    prefix="/api/v1/templates",
    tags=["publication"],
    dependencies=[Depends(require(Right.MC_ADMIN)), Depends(template_in_folder)],
    # every route names a template, which may not exist (or be of another folder)
    responses={**API_ERRORS, **documented(404)},
)


@router.post(
    "/{name}/publish",
    response_model=PublicationStateOut,
    summary="Publish a new version of a template to every enabled execution instance",
    responses=documented(409),
)
async def publish(name: str, publishing: Publishing, operator: Admin) -> Any:
    return await publishing.publish(name, operator.login)


@router.post(
    "/{name}/unpublish",
    response_model=PublicationStateOut,
    summary="Unpublish a template from every enabled execution instance",
    responses=documented(409),
)
async def unpublish(name: str, publishing: Publishing, operator: Admin) -> Any:
    return await publishing.unpublish(name, operator.login)


@router.get(
    "/{name}/publication",
    response_model=PublicationStateOut,
    summary="A template's publication state per execution instance, and its log",
)
def publication(name: str, publishing: Publishing) -> Any:
    return publishing.state(name)
