"""The control instance's design pages: event types, templates (the editor with its errors at
their line as one types and a live preview for a seed), blocks, seeds and proofs — all through
the design service the REST API uses."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.responses import Response

from msgcenter.console.route import ConsoleRoute
from msgcenter.console.web import Admin, redirect, render
from msgcenter.control.design.service import DesignService
from msgcenter.control.folders import check_changes_shared
from msgcenter.designs import (
    BlockIn,
    EventTypeIn,
    SeedIn,
    Template,
    TemplateContent,
    TemplateCopy,
    TemplateIn,
    TemplatePatch,
)
from msgcenter.errors import InvalidInputError, MsgcenterError
from msgcenter.events.model import Channel
from msgcenter.render import RenderProblem, TemplateSyntaxProblem
from msgcenter.web.params import RowId
from msgcenter.web.state import from_state

Design = Annotated[DesignService, Depends(from_state("design"))]
#: the editor's fields, in the order they are shown
TEXT_PARTS = ("subject", "html", "text", "sms", "push_title", "push_body")
HEADER_FIELDS = ("sender", "reply_to", "list_unsubscribe")
#: the parts a template of each channel has, and which of them are one line
CHANNEL_PARTS = {
    Channel.EMAIL: ("subject", "html", "text"),
    Channel.SMS: ("sms",),
    Channel.IOS: ("push_title", "push_body"),
    Channel.ANDROID: ("push_title", "push_body"),
}
ONE_LINE_PARTS = frozenset({"subject", "push_title"})

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


async def _shared(user: Admin) -> None:
    check_changes_shared(user.operator, "event types and blocks")


#: on every change to event types and blocks
SHARED = [Depends(_shared)]


# -- event types ------------------------------------------------------------------------


@router.get("/event-types")
async def event_types(request: Request, user: Admin, design: Design) -> Response:
    found = await asyncio.to_thread(design.list_event_types)
    return render(request, "control/event_types.html", event_types=found)


@router.post("/event-types", dependencies=SHARED)
async def add_event_type(
    user: Admin,
    design: Design,
    name: Annotated[str, Form(max_length=64)],
    label: Annotated[str, Form(max_length=255)],
) -> Response:
    new = _valid(EventTypeIn, "event type", name=name.strip(), label=label.strip())
    await asyncio.to_thread(design.add_event_type, new)
    return redirect("/console/event-types", flash=f"event type {new.name} declared")


@router.post("/event-types/{name}/label", dependencies=SHARED)
async def relabel_event_type(
    name: str, user: Admin, design: Design, label: Annotated[str, Form(max_length=255)]
) -> Response:
    await asyncio.to_thread(design.relabel_event_type, name, label.strip())
    return redirect("/console/event-types", flash=f"event type {name} relabelled")


@router.post("/event-types/{name}/retire", dependencies=SHARED)
async def retire_event_type(name: str, user: Admin, design: Design) -> Response:
    await asyncio.to_thread(design.retire_event_type, name)
    return redirect("/console/event-types", flash=f"event type {name} retired")


# -- templates ---------------------------------------------------------------------------


@router.get("/templates")
async def templates(request: Request, user: Admin, design: Design) -> Response:
    found = await asyncio.to_thread(design.templates_of, user.operator.folder)
    types = await asyncio.to_thread(design.list_event_types)
    return render(
        request,
        "control/templates.html",
        templates=found,
        event_types=[t for t in types if not t.retired],
        channels=[c.label for c in Channel],
    )


@router.post("/templates")
async def add_template(request: Request, user: Admin, design: Design) -> Response:
    form = await request.form()
    new = _valid(
        TemplateIn,
        "template",
        name=_field(form, "name"),
        label=_field(form, "label") or _field(form, "name"),
        event_type=_field(form, "event_type"),
        channel=_field(form, "channel") or "email",
        folder=user.operator.folder or _field(form, "folder") or None,
    )
    await asyncio.to_thread(design.create_template, new)
    return redirect(f"/console/templates/{new.name}", flash="template created")


@router.get("/templates/{name}")
async def editor(request: Request, name: str, user: Admin, design: Design) -> Response:
    found = await asyncio.to_thread(design.template_of, name, user.operator.folder)
    return render(request, "control/editor.html", **await _editor_context(design, found))


@router.post("/templates/{name}")
async def save_template(request: Request, name: str, user: Admin, design: Design) -> Response:
    found = await asyncio.to_thread(design.template_of, name, user.operator.folder)
    form = await request.form()
    patch = _valid(
        TemplatePatch,
        "template",
        label=_field(form, "label") or found.label,
        content=_content(form),
    )
    try:
        await asyncio.to_thread(design.edit_template, name, patch)
    except (InvalidInputError, RenderProblem) as exc:
        context = await _editor_context(design, found)
        context["content"] = _content(form)
        return render(request, "control/editor.html", 422, error=exc.detail, **context)
    return redirect(f"/console/templates/{name}", flash="template saved")


@router.post("/templates/{name}/draft")
async def draft(request: Request, name: str, user: Admin, design: Design) -> Response:
    """The editor's live answer as one types: the errors at their line, and the preview of the
    unsaved content for the chosen seed."""
    await asyncio.to_thread(design.template_of, name, user.operator.folder)
    form = await request.form()
    context: dict[str, Any] = {"name": name}
    try:
        content = TemplateContent.model_validate(_content(form))
        seed = _field(form, "seed")
        if seed.isdigit():
            context["preview"] = await asyncio.to_thread(
                design.preview, name, int(seed), content=content
            )
        else:
            await asyncio.to_thread(design.check_draft, name, content)
    except ValidationError as exc:
        context["error"] = _pydantic_problem(exc)
    except (TemplateSyntaxProblem, RenderProblem) as exc:
        context["error"] = exc.detail
        context["source_line"] = _source_line(_content(form), exc.part, exc.line)
    except MsgcenterError as exc:
        context["error"] = exc.detail
    return render(request, "control/draft.html", **context)


@router.post("/templates/{name}/copy")
async def copy_template(request: Request, name: str, user: Admin, design: Design) -> Response:
    await asyncio.to_thread(design.template_of, name, user.operator.folder)
    form = await request.form()
    copy = _valid(
        TemplateCopy,
        "copy",
        name=_field(form, "new_name"),
        event_type=_field(form, "event_type") or None,
        channel=_field(form, "channel") or None,
        folder=user.operator.folder or _field(form, "folder") or None,
    )
    await asyncio.to_thread(design.copy_template, name, copy)
    return redirect(f"/console/templates/{copy.name}", flash=f"copied from {name}")


@router.post("/templates/{name}/delete")
async def delete_template(name: str, user: Admin, design: Design) -> Response:
    await asyncio.to_thread(design.template_of, name, user.operator.folder)
    await asyncio.to_thread(design.delete_template, name)
    return redirect("/console/templates", flash=f"template {name} deleted")


# -- seeds and proofs ---------------------------------------------------------------------


@router.post("/templates/{name}/seeds")
async def add_seed(request: Request, name: str, user: Admin, design: Design) -> Response:
    await asyncio.to_thread(design.template_of, name, user.operator.folder)
    form = await request.form()
    new = _valid(
        SeedIn,
        "seed",
        label=_field(form, "label") or "seed",
        address=_field(form, "address"),
        external_id=_field(form, "external_id") or None,
        ctx=_field(form, "ctx") or ("<ctx/>" if _field(form, "ctx_format") == "xml" else "{}"),
        ctx_format=_field(form, "ctx_format") or "json",
    )
    added = await asyncio.to_thread(design.add_seed, name, new)
    return redirect(f"/console/templates/{name}", flash=f"seed {added.id} added")


@router.post("/templates/{name}/seeds/{seed_id}/delete")
async def delete_seed(name: str, seed_id: RowId, user: Admin, design: Design) -> Response:
    await asyncio.to_thread(design.template_of, name, user.operator.folder)
    await asyncio.to_thread(design.delete_seed, name, seed_id)
    return redirect(f"/console/templates/{name}", flash=f"seed {seed_id} deleted")


@router.post("/templates/{name}/proofs")
async def send_proof(
    request: Request,
    name: str,
    user: Admin,
    design: Design,
    seed: Annotated[int, Form(ge=1)],
) -> Response:
    await asyncio.to_thread(design.template_of, name, user.operator.folder)
    sent = await design.send_proof(name, seed, user.operator.login)
    outcome = "sent" if sent.status == "sent" else f"failed: {sent.reason}"
    return redirect(
        f"/console/templates/{name}", flash=f"proof {sent.id} to {sent.address} {outcome}"
    )


# -- blocks ------------------------------------------------------------------------------


@router.get("/blocks")
async def blocks(request: Request, user: Admin, design: Design) -> Response:
    found = await asyncio.to_thread(design.list_blocks)
    return render(request, "control/blocks.html", blocks=found)


@router.post("/blocks", dependencies=SHARED)
async def set_block(
    user: Admin,
    design: Design,
    name: Annotated[str, Form(max_length=64)],
    content: Annotated[str, Form(max_length=1_000_000)],
) -> Response:
    new = _valid(BlockIn, "block", name=name.strip(), content=content)
    _block, created = await asyncio.to_thread(design.set_block, new)
    return redirect(
        "/console/blocks", flash=f"block {new.name} {'created' if created else 'saved'}"
    )


@router.post("/blocks/{name}/delete", dependencies=SHARED)
async def delete_block(name: str, user: Admin, design: Design) -> Response:
    await asyncio.to_thread(design.delete_block, name)
    return redirect("/console/blocks", flash=f"block {name} deleted")


# -- helpers -----------------------------------------------------------------------------


async def _editor_context(design: DesignService, found: Template) -> dict[str, Any]:
    seeds, proofs = await asyncio.gather(
        asyncio.to_thread(design.list_seeds, found.name),
        asyncio.to_thread(design.list_proofs, found.name),
    )
    return {
        "event_types": [
            t for t in await asyncio.to_thread(design.list_event_types) if not t.retired
        ],
        "channels": [c.label for c in Channel],
        "template": found,
        "content": found.content.model_dump(exclude={"blocks"}),
        "seeds": seeds,
        "proofs": proofs,
        "parts": CHANNEL_PARTS[found.channel],
        "one_line": ONE_LINE_PARTS,
        "headers": HEADER_FIELDS if found.channel is Channel.EMAIL else (),
        "fallback_channels": [c for c in Channel if c is not found.channel],
    }


def _field(form: FormData, name: str) -> str:
    """A form field (a template part as typed, anything else trimmed; "" when absent)."""
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    return value if name in TEXT_PARTS else value.strip()


def _content(form: FormData) -> dict[str, Any]:
    """A template's content from the editor's fields (an empty header is no header)."""
    content: dict[str, Any] = {part: _field(form, part) for part in TEXT_PARTS}
    content["sender"] = _field(form, "sender")
    content["reply_to"] = _field(form, "reply_to") or None
    content["list_unsubscribe"] = _field(form, "list_unsubscribe") or None
    content["tracking"] = _field(form, "tracking") == "on"
    content["fallback_channel"] = _field(form, "fallback_channel") or None
    return content


def _valid(model: Any, what: str, **values: Any) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise InvalidInputError(f"invalid {what}", detail=_pydantic_problem(exc)) from None


def _pydantic_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def _source_line(content: dict[str, Any], part: str, line: int | None) -> str | None:
    """The line of the part an error names, to show beside it."""
    lines = str(content.get(part, "")).splitlines()
    return lines[line - 1] if line is not None and 0 < line <= len(lines) else None
