"""The design API of a control instance (``mc_admin``): event types, templates, blocks, seeds,
preview and proofs (SPEC §4).

Content the control instance cannot accept (a template that does not compile,
a seed whose ctx is not well-formed, a template that cannot be rendered) is
answered 422 with the part, line and column when known.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Body, Query, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.responses import Response

from msgcenter.auth.authenticator import Authenticator
from msgcenter.control import design_service as service
from msgcenter.control.preview import render_preview
from msgcenter.control.proofs import send_proof
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
from msgcenter.operators import Operator, Right
from msgcenter.render import RenderProblem
from msgcenter.settings import Settings
from msgcenter.store import control_design as store
from msgcenter.store.database import Database
from msgcenter.web.credentials import operator_of
from msgcenter.web.problems import problem

T = TypeVar("T")


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


class ProofIn(BaseModel):
    """The seed to render and mail."""

    seed: int


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


def design_router(db: Database, auth: Authenticator, settings: Settings) -> APIRouter:
    """Routes under ``/api/v1`` for the design objects."""
    router = APIRouter(prefix="/api/v1", route_class=_DesignRoute)
    max_ctx_bytes = settings.intake.max_event_bytes

    async def admin(request: Request) -> Operator:
        operator = await operator_of(auth, request)
        operator.require(Right.MC_ADMIN)
        return operator

    def reading(query: Callable[..., T], *args: Any) -> T:
        with db.read() as conn:
            return query(conn, *args)

    def writing(change: Callable[..., T], *args: Any) -> T:
        with db.write() as conn:
            return change(conn, *args)

    # -- event types ---------------------------------------------------------------------

    @router.get(
        "/event-types",
        tags=["event types"],
        response_model=list[EventTypeOut],
        summary="Event types",
    )
    async def list_event_types(request: Request) -> Any:
        await admin(request)
        return await asyncio.to_thread(reading, store.list_event_types)

    @router.post(
        "/event-types",
        tags=["event types"],
        status_code=201,
        response_model=EventTypeOut,
        summary="Declare an event type",
    )
    async def add_event_type(new: EventTypeIn, request: Request) -> Any:
        await admin(request)
        return await asyncio.to_thread(writing, store.add_event_type, new.name, new.label, _now())

    @router.get(
        "/event-types/{name}",
        tags=["event types"],
        response_model=EventTypeOut,
        summary="An event type",
    )
    async def get_event_type(name: str, request: Request) -> Any:
        await admin(request)
        return await asyncio.to_thread(reading, store.get_event_type, name)

    @router.patch(
        "/event-types/{name}",
        tags=["event types"],
        response_model=EventTypeOut,
        summary="Rename an event type's label",
    )
    async def relabel_event_type(name: str, patch: EventTypePatch, request: Request) -> Any:
        await admin(request)
        return await asyncio.to_thread(writing, store.relabel_event_type, name, patch.label, _now())

    @router.post(
        "/event-types/{name}/retire",
        tags=["event types"],
        response_model=EventTypeOut,
        summary="Retire an event type (no new template nor publication of that type)",
    )
    async def retire_event_type(name: str, request: Request) -> Any:
        await admin(request)
        return await asyncio.to_thread(writing, store.retire_event_type, name, _now())

    # -- templates -----------------------------------------------------------------------

    @router.get(
        "/templates", tags=["templates"], response_model=list[TemplateOut], summary="Templates"
    )
    async def list_templates(request: Request) -> Any:
        await admin(request)
        return [_template_out(t) for t in await asyncio.to_thread(reading, store.list_templates)]

    @router.post(
        "/templates",
        tags=["templates"],
        status_code=201,
        response_model=TemplateOut,
        summary="Create a template (one per event type, channel and folder)",
    )
    async def add_template(new: TemplateIn, request: Request) -> Any:
        await admin(request)
        return _template_out(await asyncio.to_thread(service.create_template, db, new))

    @router.get(
        "/templates/{name}", tags=["templates"], response_model=TemplateOut, summary="A template"
    )
    async def get_template(name: str, request: Request) -> Any:
        await admin(request)
        return _template_out(await asyncio.to_thread(reading, store.get_template, name))

    @router.patch(
        "/templates/{name}",
        tags=["templates"],
        response_model=TemplateOut,
        summary="Edit a template; content replaces only the parts it names",
    )
    async def edit_template(name: str, patch: TemplatePatch, request: Request) -> Any:
        await admin(request)
        return _template_out(await asyncio.to_thread(service.edit_template, db, name, patch))

    @router.post(
        "/templates/{name}/copy",
        tags=["templates"],
        status_code=201,
        response_model=TemplateOut,
        summary="Copy a template (content and seeds) under a new name and route",
    )
    async def copy_template(name: str, copy: TemplateCopy, request: Request) -> Any:
        await admin(request)
        return _template_out(await asyncio.to_thread(service.copy_template, db, name, copy))

    @router.delete(
        "/templates/{name}",
        tags=["templates"],
        status_code=204,
        summary="Delete an unpublished template",
    )
    async def delete_template(name: str, request: Request) -> Response:
        await admin(request)
        await asyncio.to_thread(writing, store.delete_template, name)
        return Response(status_code=204)

    # -- blocks --------------------------------------------------------------------------

    @router.get(
        "/blocks", tags=["blocks"], response_model=list[BlockOut], summary="Personalisation blocks"
    )
    async def list_blocks(request: Request) -> Any:
        await admin(request)
        return await asyncio.to_thread(reading, store.list_blocks)

    @router.post(
        "/blocks",
        tags=["blocks"],
        status_code=201,
        response_model=BlockOut,
        summary="Create a block",
    )
    async def add_block(new: BlockIn, request: Request) -> Any:
        await admin(request)
        return await asyncio.to_thread(service.create_block, db, new)

    @router.get("/blocks/{name}", tags=["blocks"], response_model=BlockOut, summary="A block")
    async def get_block(name: str, request: Request) -> Any:
        await admin(request)
        return await asyncio.to_thread(reading, store.get_block, name)

    @router.put(
        "/blocks/{name}",
        tags=["blocks"],
        response_model=BlockOut,
        summary="Replace a block's source",
    )
    async def edit_block(name: str, patch: BlockPatch, request: Request) -> Any:
        await admin(request)
        return await asyncio.to_thread(service.edit_block, db, name, patch.content)

    @router.delete(
        "/blocks/{name}",
        tags=["blocks"],
        status_code=204,
        summary="Delete a block no template includes",
    )
    async def delete_block(name: str, request: Request) -> Response:
        await admin(request)
        await asyncio.to_thread(service.delete_block, db, name)
        return Response(status_code=204)

    # -- seeds ---------------------------------------------------------------------------

    @router.get(
        "/templates/{name}/seeds",
        tags=["seeds"],
        response_model=list[SeedOut],
        summary="A template's seeds",
    )
    async def list_seeds(name: str, request: Request) -> Any:
        await admin(request)

        def seeds(conn: Any) -> list[Seed]:
            return store.list_seeds(conn, store.get_template(conn, name).id)

        return [_seed_out(s) for s in await asyncio.to_thread(reading, seeds)]

    @router.post(
        "/templates/{name}/seeds",
        tags=["seeds"],
        status_code=201,
        response_model=SeedOut,
        summary="Add a seed",
    )
    async def add_seed(name: str, new: SeedIn, request: Request) -> Any:
        await admin(request)
        return _seed_out(
            await asyncio.to_thread(service.add_seed, db, name, new, max_ctx_bytes=max_ctx_bytes)
        )

    @router.get(
        "/templates/{name}/seeds/{seed_id}",
        tags=["seeds"],
        response_model=SeedOut,
        summary="A seed",
    )
    async def get_seed(name: str, seed_id: int, request: Request) -> Any:
        await admin(request)

        def one(conn: Any) -> Seed:
            return store.get_seed(conn, store.get_template(conn, name).id, seed_id)

        return _seed_out(await asyncio.to_thread(reading, one))

    @router.put(
        "/templates/{name}/seeds/{seed_id}",
        tags=["seeds"],
        response_model=SeedOut,
        summary="Replace a seed",
    )
    async def edit_seed(name: str, seed_id: int, new: SeedIn, request: Request) -> Any:
        await admin(request)
        return _seed_out(
            await asyncio.to_thread(
                service.edit_seed, db, name, seed_id, new, max_ctx_bytes=max_ctx_bytes
            )
        )

    @router.delete(
        "/templates/{name}/seeds/{seed_id}",
        tags=["seeds"],
        status_code=204,
        summary="Delete a seed",
    )
    async def delete_seed(name: str, seed_id: int, request: Request) -> Response:
        await admin(request)
        await asyncio.to_thread(service.delete_seed, db, name, seed_id)
        return Response(status_code=204)

    # -- preview and proofs --------------------------------------------------------------

    @router.post(
        "/templates/{name}/preview",
        tags=["preview and proofs"],
        response_model=PreviewOut,
        summary="Render a template for a seed (?seed=<id>) or an inline seed (the body)",
    )
    async def preview(
        name: str,
        request: Request,
        seed: Annotated[int | None, Query(description="a seed of the template")] = None,
        inline: Annotated[SeedIn | None, Body(description="a seed given instead of ?seed=")] = None,
    ) -> Any:
        await admin(request)
        if (seed is None) == (inline is None):
            raise InvalidInputError(
                "no seed", detail="name a seed (?seed=<id>) or send one as the body, not both"
            )
        chosen: int | SeedIn = seed if seed is not None else inline  # type: ignore[assignment]
        shown = await asyncio.to_thread(
            render_preview, db, name, chosen, max_ctx_bytes=max_ctx_bytes
        )
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
        )

    @router.post(
        "/templates/{name}/proofs",
        tags=["preview and proofs"],
        status_code=201,
        response_model=ProofOut,
        summary="Mail the template rendered for a seed to the seed's address",
    )
    async def add_proof(name: str, body: ProofIn, request: Request) -> Any:
        operator = await admin(request)
        sent = await send_proof(db, settings, name, body.seed, operator.login)
        return _proof_out(name, sent)

    @router.get(
        "/templates/{name}/proofs",
        tags=["preview and proofs"],
        response_model=list[ProofOut],
        summary="A template's proofs, newest first",
    )
    async def list_proofs(name: str, request: Request) -> Any:
        await admin(request)

        def proofs(conn: Any) -> list[Proof]:
            return store.list_proofs(conn, store.get_template(conn, name).id)

        return [_proof_out(name, p) for p in await asyncio.to_thread(reading, proofs)]

    return router


def _now() -> datetime:
    return datetime.now(UTC)


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
