"""The design objects of a control instance (SPEC §4): event types, templates, blocks, seeds, proofs.

The dataclasses are what the store returns; the ``…In`` models are what the
REST API and the CLI accept, validated the same way for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from msgcenter.events.model import CHANNEL_LABELS, Channel
from msgcenter.events.validation import TYPE_NAME
from msgcenter.publications import TEMPLATE_NAME, PublishedContent

#: blocks are included by name, ``{% include "footer" %}``
BLOCK_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
FOLDER = r"^[A-Za-z0-9_.:-]{1,64}$"


@dataclass(frozen=True, slots=True)
class EventType:
    """A declared kind of event; a retired one takes no new template nor publication."""

    name: str
    label: str
    retired: bool
    created: datetime
    updated: datetime


@dataclass(frozen=True, slots=True)
class Template:
    """A message template for one (event type, channel, folder); its content has no blocks inlined."""

    id: int
    name: str
    label: str
    event_type: str
    channel: Channel
    folder: str | None
    content: PublishedContent
    #: the newest version published (0: never), and whether it is published now
    published_version: int
    published: bool
    created: datetime
    updated: datetime


@dataclass(frozen=True, slots=True)
class Block:
    """A personalisation block, included by name and frozen into publications."""

    name: str
    content: str
    created: datetime
    updated: datetime


@dataclass(frozen=True, slots=True)
class Seed:
    """A test recipient of a template, with test data shaped like a real event's (id None: inline)."""

    id: int | None
    template_id: int
    label: str
    address: str
    external_id: str | None
    ctx: str
    ctx_format: Literal["xml", "json"]


@dataclass(frozen=True, slots=True)
class Proof:
    """A rendered message sent to a seed address, and what became of it."""

    id: int
    template_id: int
    seed_id: int
    address: str
    subject: str
    #: "sent" or "failed"
    status: str
    reason: str | None
    sent_by: str
    at: datetime


def parse_channel(value: Any) -> Channel:
    """A channel from its label (``email``, ``sms``, ``ios``, ``android``) or its code."""
    if isinstance(value, Channel):
        return value
    if isinstance(value, str) and value.strip().lower() in CHANNEL_LABELS:
        return CHANNEL_LABELS[value.strip().lower()]
    try:
        return Channel(int(value))
    except (TypeError, ValueError):
        raise ValueError(
            f"unknown channel {value!r} (email, sms, ios, android or 0, 1, 41, 42)"
        ) from None


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventTypeIn(_Input):
    """A new event type."""

    name: str = Field(description="the type events carry, e.g. order_confirmation")
    label: str = Field(min_length=1, max_length=255)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not TYPE_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid event type name (letters, digits, _ . : -)")
        return value


class EventTypePatch(_Input):
    """A new label for an event type."""

    label: str = Field(min_length=1, max_length=255)


class TemplateContent(PublishedContent):
    """A template's content as designed: blocks are objects of their own, included by name."""

    # Not part of the design; the validator below says where blocks go instead.
    blocks: SkipJsonSchema[dict[str, str]] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="after")
    def _no_blocks(self) -> TemplateContent:
        if self.blocks:
            raise ValueError(
                "blocks are separate objects (/api/v1/blocks); include them by name, "
                '{% include "footer" %}'
            )
        return self


class _Route(_Input):
    @field_validator("event_type", check_fields=False)
    @classmethod
    def _type(cls, value: str | None) -> str | None:
        if value is not None and not TYPE_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid event type name")
        return value

    @field_validator("channel", mode="before", check_fields=False)
    @classmethod
    def _channel(cls, value: Any) -> Channel | None:
        return None if value is None else parse_channel(value)


class TemplateIn(_Route):
    """A new template."""

    name: str = Field(pattern=TEMPLATE_NAME, description="internal name, known to the executions")
    label: str = Field(min_length=1, max_length=255)
    event_type: str = Field(description="a declared, non-retired event type")
    channel: Channel = Field(Channel.EMAIL, description="email, sms, ios, android (or the code)")
    folder: str | None = Field(None, pattern=FOLDER)
    content: TemplateContent = Field(default_factory=TemplateContent)


class TemplatePatch(_Route):
    """Changes to a template; ``content`` replaces only the parts it names."""

    label: str | None = Field(None, min_length=1, max_length=255)
    event_type: str | None = None
    channel: Channel | None = None
    folder: str | None = Field(None, pattern=FOLDER)
    content: TemplateContent | None = None


class TemplateCopy(_Route):
    """A copy of a template under a new name; its route (type, channel, folder) must differ."""

    name: str = Field(pattern=TEMPLATE_NAME)
    label: str | None = Field(None, min_length=1, max_length=255)
    event_type: str | None = None
    channel: Channel | None = None
    folder: str | None = Field(None, pattern=FOLDER)


class BlockIn(_Input):
    """A new personalisation block."""

    name: str = Field(pattern=BLOCK_NAME)
    content: str


class BlockPatch(_Input):
    """A block's new source."""

    content: str


class SeedIn(_Input):
    """A seed; ``ctx`` is XML text, or a JSON object (as an object or as its text)."""

    label: str = Field("inline seed", min_length=1, max_length=255)
    address: str = Field(description="email address, phone number or device token, per channel")
    external_id: str | None = Field(None, max_length=255)
    ctx: str | dict[str, Any]
    ctx_format: Literal["xml", "json"] = "json"
