"""The control instance's publication pages: publish and unpublish with the state on each
execution instance and the log (who, when, which version), a warning when an instance's
technical workflows are not all running, and a diff between two versions or the draft."""

from __future__ import annotations

import asyncio
import difflib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from msgcenter.console.route import ConsoleRoute
from msgcenter.console.web import Admin, redirect, render
from msgcenter.control.design.service import DesignService
from msgcenter.control.instances.service import InstanceService
from msgcenter.control.publishing.service import PublishingService
from msgcenter.errors import InvalidInputError
from msgcenter.publications import PublicationSpec
from msgcenter.web.state import from_state

Design = Annotated[DesignService, Depends(from_state("design"))]
Publishing = Annotated[PublishingService, Depends(from_state("publishing"))]
Instances = Annotated[InstanceService, Depends(from_state("instances"))]
DRAFT = "draft"
#: what a diff compares, part by part
COMPARED = ("subject", "html", "text", "sms", "push_title", "push_body", "sender", "reply_to")

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


@router.get("/templates/{name}/publication")
async def publication(
    request: Request,
    name: str,
    user: Admin,
    design: Design,
    publishing: Publishing,
    instances: Instances,
    left: str = "",
    right: str = DRAFT,
) -> Response:
    template = await asyncio.to_thread(design.template_of, name, user.operator.folder)
    state, versions = await asyncio.gather(
        asyncio.to_thread(publishing.state, name), asyncio.to_thread(publishing.versions, name)
    )
    left = left or (str(versions[0].version) if versions else DRAFT)
    diff = await asyncio.to_thread(_diff, design, publishing, name, left, right)
    return render(
        request,
        "control/publication.html",
        template=template,
        state=state,
        versions=versions,
        left=left,
        right=right,
        diff=diff,
        unready=await _unready(instances),
    )


@router.post("/templates/{name}/publish")
async def publish(name: str, user: Admin, design: Design, publishing: Publishing) -> Response:
    await asyncio.to_thread(design.template_of, name, user.operator.folder)
    state = await publishing.publish(name, user.operator.login)
    return redirect(
        f"/console/templates/{name}/publication", flash=f"version {state.version} published"
    )


@router.post("/templates/{name}/unpublish")
async def unpublish(name: str, user: Admin, design: Design, publishing: Publishing) -> Response:
    await asyncio.to_thread(design.template_of, name, user.operator.folder)
    await publishing.unpublish(name, user.operator.login)
    return redirect(f"/console/templates/{name}/publication", flash="unpublished")


async def _unready(instances: InstanceService) -> dict[str, list[str]]:
    """Each enabled instance whose required workflows are not all running (the model product
    requires them started before any template is deployed), with why."""
    enabled = [i for i in await asyncio.to_thread(instances.list_all) if i.enabled]
    overviews = await asyncio.gather(*(instances.overview(i.name) for i in enabled))
    found = {}
    for overview in overviews:
        if overview.failure:
            found[overview.instance.name] = [f"does not answer: {overview.failure}"]
        elif overview.unready:
            found[overview.instance.name] = overview.unready
    return found


def _diff(
    design: DesignService, publishing: PublishingService, name: str, left: str, right: str
) -> list[dict[str, Any]]:
    """The parts that differ between two versions (or a version and the draft), line by line."""
    specs = {v.version: v.spec for v in publishing.versions(name)}

    def spec(which: str) -> PublicationSpec:
        if which == DRAFT:
            return design.freeze(name)
        if which.isdigit() and int(which) in specs:
            return specs[int(which)]
        raise InvalidInputError(f"no version {which!r} of template '{name}'")

    before, after = spec(left), spec(right)
    parts = []
    for part in COMPARED:
        old = str(getattr(before.content, part) or "").splitlines()
        new = str(getattr(after.content, part) or "").splitlines()
        if old != new:
            parts.append({"part": part, "lines": list(difflib.ndiff(old, new))})
    if before.content.blocks != after.content.blocks:
        for block in sorted(set(before.content.blocks) | set(after.content.blocks)):
            old = before.content.blocks.get(block, "").splitlines()
            new = after.content.blocks.get(block, "").splitlines()
            if old != new:
                parts.append({"part": f"block {block}", "lines": list(difflib.ndiff(old, new))})
    return parts
