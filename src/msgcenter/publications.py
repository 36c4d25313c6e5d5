"""Publications: frozen, versioned templates as an execution instance receives them (SPEC §1, §4).

The control instance pushes a :class:`PublicationSpec`; the execution instance
stores one immutable row per flavour (real-time and batch) and routes events
to the newest active one. On the control instance, :class:`PublicationState`
says where a template's publication stands on each execution instance.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from msgcenter.errors import InvalidInputError
from msgcenter.events.model import Channel, Queue
from msgcenter.events.validation import TYPE_NAME
from msgcenter.instances import ExecInstance
from msgcenter.render import (
    CompiledContent,
    MessageContent,
    TemplateSyntaxProblem,
    compile_content,
)

TEMPLATE_NAME = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$"


class AttachmentSpec(BaseModel):
    """An attachment: a fixed URL, or a URL read from the event's ctx at send time."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="fixed https URL")
    ctx_url: str | None = Field(
        None, description="dotted ctx path holding the URL, e.g. order.invoice_url"
    )
    filename: str | None = Field(
        None, description="name shown to the recipient (default: from the URL)"
    )


class PublishedContent(BaseModel):
    """The content of a message template, blocks included (frozen at publication)."""

    model_config = ConfigDict(extra="forbid")

    subject: str = ""
    html: str = ""
    text: str = ""
    sms: str = ""
    push_title: str = ""
    push_body: str = ""
    push_data: dict[str, str] = Field(
        default_factory=dict,
        description="push notifications' custom data: key -> template rendered to a string "
        "(APNs: top-level keys beside aps; FCM: message data)",
    )
    push_sound: str = Field("", description="push sound name (template); empty: silent")
    push_badge: str = Field(
        "", description="app icon badge (template rendering a whole number); empty: unchanged"
    )
    push_collapse_id: str = Field(
        "",
        description="notifications with the same collapse id replace each other on the device "
        "(template; APNs apns-collapse-id, FCM collapse_key)",
    )
    sender: str = Field("", description='"Name <address>" or an address; required for email')
    reply_to: str | None = None
    attachments: list[AttachmentSpec] = Field(default_factory=list)
    tracking: bool = False
    list_unsubscribe: str | None = Field(
        None,
        description="https: and/or mailto: URIs for List-Unsubscribe (comma-separated, "
        "optionally in <>), rendered per recipient like the subject; without an https: URI the "
        "execution instance adds its own one-click URL (RFC 8058)",
    )
    fallback_channel: Channel | None = Field(
        None,
        description="when this template's message fails for good (at once, or later from a "
        "bounce or a receipt), the event is queued again, once, on this channel, where the "
        "template of the same event type for that channel serves it (0 email, 1 sms, 41 ios, "
        "42 android)",
    )
    blocks: dict[str, str] = Field(
        default_factory=dict, description="personalisation blocks by name"
    )

    @field_validator("push_data")
    @classmethod
    def _push_data_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            problem = push_data_key_problem(key)
            if problem:
                raise ValueError(f"push_data key {key!r}: {problem}")
        return value


#: a push data key: short, and usable by both APNs (a JSON key) and FCM (a data key)
PUSH_DATA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
#: keys APNs or FCM keep for themselves (FCM: "from", "message_type", "google…", "gcm…")
RESERVED_PUSH_DATA_KEYS = frozenset({"aps", "from", "message_type", "notification"})


def push_data_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a push data key, or None."""
    if not PUSH_DATA_KEY.fullmatch(key):
        return "a letter or _ then letters, digits, _ . -, at most 64"
    if key in RESERVED_PUSH_DATA_KEYS or key.lower().startswith(("google", "gcm")):
        return "reserved by APNs or FCM"
    return None


#: the largest version a publication row holds (an INTEGER column: 32 bits on PostgreSQL)
MAX_VERSION = 2**31 - 1


class PublicationSpec(BaseModel):
    """What a control instance publishes: one template, both flavours created from it."""

    model_config = ConfigDict(extra="forbid")

    template: str = Field(pattern=TEMPLATE_NAME, description="the template's internal name")
    event_type: str = Field(description="the event type it serves")
    channel: Channel = Channel.EMAIL
    folder: str | None = Field(None, max_length=64)
    version: int = Field(ge=1, le=MAX_VERSION)
    published_at: datetime | None = Field(None, description="default: now")
    content: PublishedContent

    @field_validator("event_type")
    @classmethod
    def _type_name(cls, value: str) -> str:
        if not TYPE_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid event type name")
        return value

    @model_validator(mode="after")
    def _fallback_elsewhere(self) -> PublicationSpec:
        if self.content.fallback_channel is self.channel:
            raise ValueError(
                f"content.fallback_channel: an event cannot fall back to its own channel "
                f"({self.channel.label})"
            )
        return self


def load_spec(path: Path) -> PublicationSpec:
    """A publication from a TOML or JSON file; :class:`InvalidInputError` naming the problem."""
    try:
        text = path.read_text("utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        return PublicationSpec.model_validate(data)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}", detail=str(exc)) from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(
            f"{path} is not valid {path.suffix[1:].upper() or 'JSON'}", detail=str(exc)
        ) from None
    except ValidationError as exc:
        raise InvalidInputError(f"{path}: invalid publication", detail=spec_problem(exc)) from None


def spec_problem(exc: ValidationError) -> str:
    """What makes a publication invalid, in one line: the field and the first problem."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


@dataclass(frozen=True, slots=True)
class Publication:
    """One stored flavour of a published template."""

    id: int
    template: str
    event_type: str
    channel: Channel
    folder: str | None
    queue: Queue
    version: int
    published_at: datetime
    content: PublishedContent
    active: bool = True

    @classmethod
    def draft(cls, spec: PublicationSpec) -> Publication:
        """The real-time flavour ``spec`` becomes, before it is stored: what is compiled to check
        a publication and rendered for a preview."""
        return cls(
            0,
            spec.template,
            spec.event_type,
            spec.channel,
            spec.folder,
            Queue.RT,
            spec.version,
            spec.published_at or datetime.now(UTC),
            spec.content,
        )


def message_parts(content: PublishedContent) -> MessageContent:
    """The renderable parts of a template's content."""
    return MessageContent(
        subject=content.subject,
        html=content.html,
        text=content.text,
        sms=content.sms,
        push_title=content.push_title,
        push_body=content.push_body,
        list_unsubscribe=content.list_unsubscribe or "",
        push_sound=content.push_sound,
        push_badge=content.push_badge,
        push_collapse_id=content.push_collapse_id,
        push_data=content.push_data,
    )


#: a template tag, whatever it renders to
_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


def check_list_unsubscribe(content: PublishedContent) -> None:
    """Refuse a List-Unsubscribe whose URIs are not all ``https:`` or ``mailto:`` as written in
    the template (the scheme may not come from the event), or that names more than one
    ``https:`` URI (RFC 8058 §3.1); raises :class:`TemplateSyntaxProblem` in ``list_unsubscribe``.

    Checked when a template is saved and published, not when a publication already stored
    is loaded: a message is never failed for its List-Unsubscribe header.
    """
    source = content.list_unsubscribe or ""
    # each tag stands for one word of the URI it is part of
    pieces = [p for p in re.split(r"[\s,<>]+", _TAG.sub("x", source)) if p]
    web = 0
    for piece in pieces:
        scheme = piece.split(":", 1)[0].lower() if ":" in piece else ""
        if scheme not in ("https", "mailto"):
            raise TemplateSyntaxProblem(
                "list_unsubscribe",
                f"{piece!r} must start with https: or mailto: (written in the template)",
                line=None,
            )
        web += scheme == "https"
    if web > 1:
        raise TemplateSyntaxProblem(
            "list_unsubscribe", "more than one https: URI (RFC 8058 wants one)", line=None
        )


def compile_publication(publication: Publication) -> CompiledContent:
    """Compile a publication's message parts with its frozen blocks (raises
    :class:`~msgcenter.render.TemplateSyntaxProblem` with the part and line; a push
    template with neither title nor body is refused in ``push_body``)."""
    check_push_content(publication.channel, publication.content)
    return compile_content(message_parts(publication.content), publication.content.blocks)


def check_push_content(channel: Channel, content: PublishedContent) -> None:
    """Refuse a push (ios, android) template that would show nothing: no title and no body."""
    if channel in (Channel.IOS, Channel.ANDROID) and not (
        content.push_title.strip() or content.push_body.strip()
    ):
        raise TemplateSyntaxProblem(
            "push_body",
            f"a {channel.label} push template needs a push_title or a push_body",
            line=None,
        )


#: where a template stands on one execution instance
PENDING, PUBLISHED, UNPUBLISHED = "pending", "published", "unpublished"


@dataclass(frozen=True, slots=True)
class PendingPush:
    """One template an execution instance has not caught up with."""

    instance: ExecInstance
    template_id: int
    template: str
    folder: str | None
    #: the version to publish, or None to unpublish
    spec: PublicationSpec | None


@dataclass(frozen=True, slots=True)
class InstanceState:
    """Where a template stands on one execution instance."""

    instance: str
    enabled: bool
    state: str
    version: int
    failure_reason: str | None
    last_attempt: datetime | None


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One publication or unpublication."""

    action: str
    version: int
    operator: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PublicationState:
    """A template's publication: wanted state, per-instance state, and its log (newest first)."""

    template: str
    published: bool
    version: int
    instances: list[InstanceState]
    log: list[LogEntry]


@dataclass(frozen=True, slots=True)
class PublishedVersion:
    """One version of a template, as it was frozen and published."""

    version: int
    published_at: datetime
    published_by: str
    spec: PublicationSpec
