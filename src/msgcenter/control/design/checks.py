"""What a control instance checks before it stores a design: templates compile, seeds read like events.

A template is compiled with :func:`msgcenter.render.compile_content` (the
execution instance's own code) and then rendered once against an empty ctx and
against each of its seeds, so that a sandbox violation is refused when the
template is saved or frozen, with its part and line, instead of failing every
event later. Other render problems (a required value a seed lacks) are left to
the preview, which shows them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from jinja2.exceptions import SecurityError

from msgcenter.errors import (
    HostileXmlError,
    InvalidEventError,
    InvalidInputError,
    MalformedXmlError,
    MsgcenterError,
    PayloadTooLargeError,
)
from msgcenter.events.model import TEMPLATE_EVENT_FIELDS, Channel, CtxFormat, EmailFormat
from msgcenter.events.validation import json_type, validate_event
from msgcenter.events.xml import parse_document
from msgcenter.publications import PublishedContent, check_list_unsubscribe, message_parts
from msgcenter.render import (
    CompiledContent,
    Ctx,
    RenderProblem,
    TemplateSyntaxProblem,
    compile_content,
    ctx_from_data,
    load_ctx,
)
from msgcenter.render.ctx import MAX_DEPTH

#: the event field that holds a seed's address, per channel
ADDRESS_FIELDS = {
    Channel.EMAIL: "email",
    Channel.SMS: "mobile_phone",
    Channel.IOS: "registration_token",
    Channel.ANDROID: "registration_token",
}


class MalformedCtxError(InvalidInputError):
    """A seed's ctx cannot be read; ``line`` and ``column`` locate the problem when known."""

    code = "malformed-ctx"

    def __init__(
        self, message: str, detail: str, *, line: int | None = None, column: int | None = None
    ):
        super().__init__(message, detail=detail)
        self.line = line
        self.column = column


def seed_event(
    event_type: str,
    channel: Channel,
    folder: str | None,
    address: str = "",
    external_id: str | None = None,
) -> dict[str, Any]:
    """The ``event`` a template sees for a seed: the fields an execution instance passes, seed values in."""
    fields: dict[str, Any] = dict.fromkeys(TEMPLATE_EVENT_FIELDS)
    fields.update(
        id=0,
        type=event_type,
        wished_channel=int(channel),
        email_format=int(EmailFormat.UNKNOWN),
        external_id=external_id,
        created=datetime.now(UTC),
        folder=folder,
    )
    fields[ADDRESS_FIELDS[channel]] = address or None
    return fields


def check_content(
    content: PublishedContent,
    blocks: Mapping[str, str],
    event: Mapping[str, Any],
    samples: Iterable[Ctx] = (),
) -> CompiledContent:
    """Compile ``content`` with ``blocks`` and try it on an empty ctx and on ``samples``.

    Raises :class:`TemplateSyntaxProblem` naming the part (or block) and line
    for a syntax error, an unknown block, a sandbox violation, or a List-Unsubscribe
    that is not https: or mailto: URIs.
    """
    check_list_unsubscribe(content)
    compiled = compile_content(message_parts(content), blocks)
    for ctx in (ctx_from_data({}), *samples):
        try:
            compiled.render(event, ctx)
        except RenderProblem as problem:
            if isinstance(problem.__cause__, SecurityError):
                raise TemplateSyntaxProblem(
                    problem.part, problem.reason, line=problem.line
                ) from None
    return compiled


def check_block(name: str, blocks: Mapping[str, str]) -> None:
    """Check block ``name`` of ``blocks`` in both escaping modes; problems are located in ``block:<name>``."""
    source = blocks[name]
    try:
        check_content(
            PublishedContent(html=source, text=source),
            blocks,
            seed_event("block", Channel.EMAIL, None),
        )
    except TemplateSyntaxProblem as problem:
        if problem.part.startswith("block:"):
            raise  # in a block this one includes, already located there
        raise TemplateSyntaxProblem(
            f"block:{name}", problem.reason, line=problem.line, column=problem.column
        ) from None


def check_seed_address(
    channel: Channel, address: str, external_id: str | None
) -> tuple[str, str | None]:
    """The seed's address and external id, checked as an execution instance checks an event's."""
    field = ADDRESS_FIELDS[channel]
    try:
        event = validate_event(
            {
                "type": "seed",
                "wished_channel": int(channel),
                field: address,
                "external_id": external_id,
            },
            "{}",
            CtxFormat.JSON,
        )
    except InvalidEventError as exc:
        name = "address" if exc.field == field else exc.field
        raise InvalidInputError(f"invalid seed {name}", detail=f"{name}: {exc.reason}") from None
    return getattr(event, field), event.external_id


def check_seed_ctx(ctx: str | Mapping[str, Any], ctx_format: str, *, max_bytes: int) -> str:
    """The seed's ctx as stored (text), checked to be what an execution instance accepts.

    XML must be well-formed and go through the intake's hardened parser; JSON
    must be an object. Errors name the line and column.
    """
    if not isinstance(ctx, str):
        if ctx_format != "json":
            raise MalformedCtxError("the seed ctx is not XML", "an XML ctx is given as text")
        ctx = orjson.dumps(ctx).decode()
    size = len(ctx.encode("utf-8"))
    if size > max_bytes:
        raise PayloadTooLargeError(
            "the seed ctx is too large",
            detail=f"the ctx is {size} bytes; events are limited to {max_bytes}",
        )
    if ctx_format == "xml":
        try:
            parse_document(ctx.encode("utf-8"), max_depth=MAX_DEPTH)
        except MalformedXmlError as exc:
            raise MalformedCtxError(
                "the seed ctx is not well-formed XML", exc.detail, line=exc.line, column=exc.column
            ) from None
        except HostileXmlError as exc:
            raise MalformedCtxError("the seed ctx is refused", exc.detail) from None
    else:
        try:
            data = json.loads(ctx)
        except json.JSONDecodeError as exc:
            raise MalformedCtxError(
                "the seed ctx is not valid JSON",
                f"JSON parse error at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                line=exc.lineno,
                column=exc.colno,
            ) from None
        except RecursionError:
            raise MalformedCtxError(
                "the seed ctx is not usable", "the JSON is nested too deeply"
            ) from None
        if not isinstance(data, dict):
            raise MalformedCtxError(
                "the seed ctx is not a JSON object",
                f"the ctx must be a JSON object, not {json_type(data)}",
            )
    try:
        load_ctx(ctx, ctx_format)
    except MsgcenterError as exc:
        raise MalformedCtxError("the seed ctx is not usable", exc.detail) from None
    return ctx
