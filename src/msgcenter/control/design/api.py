"""The design API of a control instance (``mc_admin``): event types, templates, blocks, seeds,
preview and proofs (SPEC §4).

Content the control instance cannot accept (a template that does not compile,
a seed whose ctx is not well-formed, a template that cannot be rendered) is
answered 422 with the part, line and column when known.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.responses import Response

from msgcenter.control.design.service import DesignService
from msgcenter.control.folders import check_changes_shared, check_own_folder
from msgcenter.designs import (
    BlockIn,
    BlockPatch,
    EventTypeIn,
    EventTypePatch,
    Proof,
    Seed,
    SeedIn,
    Template,
    TemplateContent,
    TemplateCopy,
    TemplateIn,
    TemplatePatch,
)
from msgcenter.errors import InvalidInputError
from msgcenter.operators import Right
from msgcenter.render import RenderProblem
from msgcenter.web.access import Admin, require
from msgcenter.web.params import MAX_SMALL_ROW_ID, SmallRowId
from msgcenter.web.problems import API_ERRORS, documented, problem
from msgcenter.web.state import from_state


class EventTypeOut(BaseModel):
    """An event type."""

    name: str
    label: str
    retired: bool
    created: datetime
    updated: datetime


class TemplateOut(BaseModel):
    """A template; its content names blocks, which are objects of their own."""

    name: str
    label: str
    event_type: str
    channel: Literal["email", "sms", "ios", "android"]
    folder: str | None
    content: TemplateContent
    published_version: int
    published: bool
    created: datetime
    updated: datetime


class BlockOut(BaseModel):
    """A personalisation block."""

    name: str
    content: str
    created: datetime
    updated: datetime


class SeedOut(BaseModel):
    """A seed; ``ctx`` is the XML text or the JSON object."""

    id: int
    label: str
    address: str
    external_id: str | None
    ctx: Any
    ctx_format: Literal["xml", "json"]


class PreviewOut(BaseModel):
    """The rendered parts ("" where the template has none), and what they were rendered from."""

    template: str
    version: int
    seed: int | None
    address: str
    blocks: list[str]
    subject: str
    html: str
    text: str
    sms: str
    push_title: str
    push_body: str
    push_data: dict[str, str] = Field(default_factory=dict)
    push_sound: str = ""
    push_badge: str = ""
    push_collapse_id: str = ""


class ProofIn(BaseModel):
    """The seed to render and mail."""

    seed: int = Field(ge=1, le=MAX_SMALL_ROW_ID)


class ProofOut(BaseModel):
    """A proof and its outcome; ``reason`` is the relay's reply or why it failed."""

    id: int
    template: str
    seed: int
    address: str
    subject: str
    status: Literal["sent", "failed"]
    reason: str | None
    sent_by: str
    at: datetime


class _DesignRoute(APIRoute):
    """Answers 422 for content that cannot be accepted (the API's default for bad input is 400)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (InvalidInputError, RenderProblem) as exc:
                return problem(
                    422,
                    exc.code,
                    exc.message,
                    exc.detail,
                    part=getattr(exc, "part", None),
                    line=getattr(exc, "line", None),
                    column=getattr(exc, "column", None),
                )

        return handle


Design = Annotated[DesignService, Depends(from_state("design"))]


def template_in_folder(name: str, design: Design, operator: Admin) -> None:
    """A template of another folder is, to an operator of a folder, a template that does not
    exist (404)."""
    design.template_of(name, operator.folder)


def _shared(operator: Admin) -> None:
    check_changes_shared(operator, "event types and blocks")


#: on every route of one template
IN_FOLDER = [Depends(template_in_folder)]
#: on every change to event types and blocks
SHARED = [Depends(_shared)]
router = APIRouter(
    prefix="/api/v1",
    route_class=_DesignRoute,
    dependencies=[Depends(require(Right.MC_ADMIN))],
    responses=API_ERRORS,
)

# -- event types ------------------------------------------------------------------------


@router.get(
    "/event-types", tags=["event types"], response_model=list[EventTypeOut], summary="Event types"
)
def list_event_types(design: Design) -> Any:
    return design.list_event_types()


@router.post(
    "/event-types",
    tags=["event types"],
    status_code=201,
    response_model=EventTypeOut,
    summary="Declare an event type",
    dependencies=SHARED,
    responses=documented(409),
)
def add_event_type(new: EventTypeIn, design: Design) -> Any:
    return design.add_event_type(new)


@router.get(
    "/event-types/{name}",
    tags=["event types"],
    response_model=EventTypeOut,
    summary="An event type",
    responses=documented(404),
)
def get_event_type(name: str, design: Design) -> Any:
    return design.get_event_type(name)


@router.patch(
    "/event-types/{name}",
    tags=["event types"],
    response_model=EventTypeOut,
    summary="Rename an event type's label",
    dependencies=SHARED,
    responses=documented(404),
)
def relabel_event_type(name: str, patch: EventTypePatch, design: Design) -> Any:
    return design.relabel_event_type(name, patch.label)


@router.post(
    "/event-types/{name}/retire",
    tags=["event types"],
    response_model=EventTypeOut,
    summary="Retire an event type (no new template nor publication of that type)",
    dependencies=SHARED,
    responses=documented(404, 409),
)
def retire_event_type(name: str, design: Design) -> Any:
    return design.retire_event_type(name)


# -- templates ---------------------------------------------------------------------------


@router.get("/templates", tags=["templates"], response_model=list[TemplateOut], summary="Templates")
def list_templates(design: Design, operator: Admin) -> Any:
    return [_template_out(t) for t in design.templates_of(operator.folder)]


@router.post(
    "/templates",
    tags=["templates"],
    status_code=201,
    response_model=TemplateOut,
    summary="Create a template (one per event type, channel and folder)",
    responses=documented(409),
)
def add_template(new: TemplateIn, design: Design, operator: Admin) -> Any:
    check_own_folder(operator, new.folder)
    return _template_out(design.create_template(new))


@router.get(
    "/templates/{name}",
    tags=["templates"],
    response_model=TemplateOut,
    summary="A template",
    dependencies=IN_FOLDER,
    responses=documented(404),
)
def get_template(name: str, design: Design) -> Any:
    return _template_out(design.get_template(name))


@router.patch(
    "/templates/{name}",
    tags=["templates"],
    response_model=TemplateOut,
    summary="Edit a template; content replaces only the parts it names",
    dependencies=IN_FOLDER,
    responses=documented(404, 409),
)
def edit_template(name: str, patch: TemplatePatch, design: Design) -> Any:
    return _template_out(design.edit_template(name, patch))


@router.post(
    "/templates/{name}/copy",
    tags=["templates"],
    status_code=201,
    response_model=TemplateOut,
    summary="Copy a template (content and seeds) under a new name and route",
    dependencies=IN_FOLDER,
    responses=documented(404, 409),
)
def copy_template(name: str, copy: TemplateCopy, design: Design, operator: Admin) -> Any:
    if "folder" in copy.model_fields_set:
        check_own_folder(operator, copy.folder)
    return _template_out(design.copy_template(name, copy))


@router.delete(
    "/templates/{name}",
    tags=["templates"],
    status_code=204,
    summary="Delete an unpublished template",
    dependencies=IN_FOLDER,
    responses=documented(404, 409),
)
def delete_template(name: str, design: Design) -> Response:
    design.delete_template(name)
    return Response(status_code=204)


# -- blocks ------------------------------------------------------------------------------


@router.get(
    "/blocks", tags=["blocks"], response_model=list[BlockOut], summary="Personalisation blocks"
)
def list_blocks(design: Design) -> Any:
    return design.list_blocks()


@router.post(
    "/blocks",
    tags=["blocks"],
    status_code=201,
    response_model=BlockOut,
    summary="Create a block",
    dependencies=SHARED,
    responses=documented(409),
)
def add_block(new: BlockIn, design: Design) -> Any:
    return design.create_block(new)


@router.get(
    "/blocks/{name}",
    tags=["blocks"],
    response_model=BlockOut,
    summary="A block",
    responses=documented(404),
)
def get_block(name: str, design: Design) -> Any:
    return design.get_block(name)


@router.put(
    "/blocks/{name}",
    tags=["blocks"],
    response_model=BlockOut,
    summary="Replace a block's source",
    dependencies=SHARED,
    responses=documented(404),
)
def edit_block(name: str, patch: BlockPatch, design: Design) -> Any:
    return design.edit_block(name, patch.content)


@router.delete(
    "/blocks/{name}",
    tags=["blocks"],
    status_code=204,
    summary="Delete a block no template includes",
    dependencies=SHARED,
    responses=documented(404, 409),
)
def delete_block(name: str, design: Design) -> Response:
    design.delete_block(name)
    return Response(status_code=204)


# -- seeds -------------------------------------------------------------------------------


@router.get(
    "/templates/{name}/seeds",
    tags=["seeds"],
    response_model=list[SeedOut],
    summary="A template's seeds",
    dependencies=IN_FOLDER,
    responses=documented(404),
)
def list_seeds(name: str, design: Design) -> Any:
    return [_seed_out(s) for s in design.list_seeds(name)]


@router.post(
    "/templates/{name}/seeds",
    tags=["seeds"],
    status_code=201,
    response_model=SeedOut,
    summary="Add a seed",
    dependencies=IN_FOLDER,
    responses=documented(404),
)
def add_seed(name: str, new: SeedIn, design: Design) -> Any:
    return _seed_out(design.add_seed(name, new))


@router.get(
    "/templates/{name}/seeds/{seed_id}",
    tags=["seeds"],
    response_model=SeedOut,
    summary="A seed",
    dependencies=IN_FOLDER,
    responses=documented(404),
)
def get_seed(name: str, seed_id: SmallRowId, design: Design) -> Any:
    return _seed_out(design.get_seed(name, seed_id))


@router.put(
    "/templates/{name}/seeds/{seed_id}",
    tags=["seeds"],
    response_model=SeedOut,
    summary="Replace a seed",
    dependencies=IN_FOLDER,
    responses=documented(404),
)
def edit_seed(name: str, seed_id: SmallRowId, new: SeedIn, design: Design) -> Any:
    return _seed_out(design.edit_seed(name, seed_id, new))


@router.delete(
    "/templates/{name}/seeds/{seed_id}",
    tags=["seeds"],
    status_code=204,
    summary="Delete a seed",
    dependencies=IN_FOLDER,
    responses=documented(404),
)
def delete_seed(name: str, seed_id: SmallRowId, design: Design) -> Response:
    design.delete_seed(name, seed_id)
    return Response(status_code=204)


# -- preview and proofs ------------------------------------------------------------------


@router.post(
    "/templates/{name}/preview",
    tags=["preview and proofs"],
    response_model=PreviewOut,
    summary="Render a template for a seed (?seed=<id>) or an inline seed (the body)",
    dependencies=IN_FOLDER,
    responses=documented(404),
)
def preview(
    name: str,
    design: Design,
    seed: Annotated[
        int | None, Query(ge=1, le=MAX_SMALL_ROW_ID, description="a seed of the template")
    ] = None,
    inline: Annotated[SeedIn | None, Body(description="a seed given instead of ?seed=")] = None,
) -> Any:
    chosen: int | SeedIn
    if seed is not None and inline is None:
        chosen = seed
    elif inline is not None and seed is None:
        chosen = inline
    else:
        raise InvalidInputError(
            "no seed", detail="name a seed (?seed=<id>) or send one as the body, not both"
        )
    shown = design.preview(name, chosen)
    message = shown.message
    return PreviewOut(
        template=shown.spec.template,
        version=shown.spec.version,
        seed=shown.seed.id,
        address=shown.seed.address,
        blocks=sorted(shown.spec.content.blocks),
        subject=message.subject,
        html=message.html,
        text=message.text,
        sms=message.sms,
        push_title=message.push_title,
        push_body=message.push_body,
        push_data=dict(message.push_data),
        push_sound=message.push_sound,
        push_badge=message.push_badge,
        push_collapse_id=message.push_collapse_id,
    )


@router.post(
    "/templates/{name}/proofs",
    tags=["preview and proofs"],
    status_code=201,
    response_model=ProofOut,
    summary="Mail the template rendered for a seed to the seed's address",
    dependencies=IN_FOLDER,
    responses=documented(404),
)
async def add_proof(name: str, body: ProofIn, design: Design, operator: Admin) -> Any:
    return _proof_out(name, await design.send_proof(name, body.seed, operator.login))


@router.get(
    "/templates/{name}/proofs",
    tags=["preview and proofs"],
    response_model=list[ProofOut],
    summary="A template's proofs, newest first",
    dependencies=IN_FOLDER,
    responses=documented(404),
)
def list_proofs(name: str, design: Design) -> Any:
    return [_proof_out(name, p) for p in design.list_proofs(name)]


def _template_out(found: Template) -> dict[str, Any]:
    return {
        "name": found.name,
        "label": found.label,
        "event_type": found.event_type,
        "channel": found.channel.label,
        "folder": found.folder,
        "content": found.content.model_dump(exclude={"blocks"}),
        "published_version": found.published_version,
        "published": found.published,
        "created": found.created,
        "updated": found.updated,
    }


def _seed_out(found: Seed) -> dict[str, Any]:
    ctx = orjson.loads(found.ctx) if found.ctx_format == "json" else found.ctx
    return {
        "id": found.id,
        "label": found.label,
        "address": found.address,
        "external_id": found.external_id,
        "ctx": ctx,
        "ctx_format": found.ctx_format,
    }


def _proof_out(template_name: str, sent: Proof) -> dict[str, Any]:
    return {
        "template": template_name,
        "id": sent.id,
        "seed": sent.seed_id,
        "address": sent.address,
        "subject": sent.subject,
        "status": sent.status,
        "reason": sent.reason,
        "sent_by": sent.sent_by,
        "at": sent.at,
    }
