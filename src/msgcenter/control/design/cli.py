"""CLI verbs of the control instance: event types, templates, blocks, seeds, preview and proofs.

They work on the control instance's database directly (``--db`` / ``--config``)
through the design service, with the same checks as the REST API.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.markup import escape
from rich.table import Table

from msgcenter.commandline import ConfigOption, DbOption, cli_instance, cli_login, console
from msgcenter.control.design.service import DesignService
from msgcenter.designs import (
    BlockIn,
    EventTypeIn,
    SeedIn,
    TemplateCopy,
    TemplateIn,
    TemplatePatch,
)
from msgcenter.errors import InvalidInputError

M = TypeVar("M", bound=BaseModel)

commands = typer.Typer(no_args_is_help=True)
event_types = typer.Typer(help="Event types: declare, relabel, retire.", no_args_is_help=True)
templates = typer.Typer(help="Message templates.", no_args_is_help=True)
blocks = typer.Typer(help="Personalisation blocks.", no_args_is_help=True)
seeds = typer.Typer(help="Seeds: test recipients of a template.", no_args_is_help=True)
commands.add_typer(event_types, name="event-type")
commands.add_typer(templates, name="template")
commands.add_typer(blocks, name="block")
commands.add_typer(seeds, name="seed")

TypeOption = Annotated[str | None, typer.Option("--type", help="event type")]
ChannelOption = Annotated[
    str | None, typer.Option(help="email, sms, ios or android (default: email)")
]
FolderOption = Annotated[str | None, typer.Option(help="folder (brand) of the template")]
LabelOption = Annotated[str | None, typer.Option(help="label shown to people")]
ContentFile = Annotated[
    Path | None,
    typer.Option(
        "--file",
        help="content as TOML or JSON: subject, html, text, sender, reply_to, attachments, "
        "tracking, sms, push_title, push_body",
    ),
]


def _valid(model: type[M], what: str, **values: Any) -> M:
    """``model`` from ``values`` (unset options left out), or :class:`InvalidInputError` naming the field."""
    try:
        return model.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or what
        raise InvalidInputError(f"invalid {what}", detail=f"{where}: {first['msg']}") from None


@contextmanager
def _design(config: Path | None, db: str | None) -> Iterator[DesignService]:
    """The design service of the control instance a command works on."""
    with cli_instance(config, db) as (settings, database):
        yield DesignService(database, settings)


def _read(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {path}", detail=str(exc)) from None


def _content(path: Path) -> dict[str, Any]:
    """A template's content from a TOML or JSON file, as a dictionary to validate."""
    text = _read(path)
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise InvalidInputError(f"{path} is not valid {kind}", detail=str(exc)) from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path} does not hold an object of content fields")
    return data


# -- event types -------------------------------------------------------------------------


@event_types.command("add")
def event_type_add(
    name: str,
    label: Annotated[str, typer.Option(help="label shown to people")],
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Declare an event type."""
    with _design(config, db) as design:
        design.add_event_type(_valid(EventTypeIn, "event type", name=name, label=label))
    console.print(f"event type '{name}' declared")


@event_types.command("list")
def event_type_list(config: ConfigOption = None, db: DbOption = None) -> None:
    """List event types."""
    with _design(config, db) as design:
        found = design.list_event_types()
    table = Table("event type", "label", "retired")
    for t in found:
        table.add_row(t.name, escape(t.label), "yes" if t.retired else "")
    console.print(table)


@event_types.command("rename")
def event_type_rename(
    name: str,
    label: Annotated[str, typer.Option(help="the new label")],
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Give an event type a new label (its name stays: events carry it)."""
    with _design(config, db) as design:
        design.relabel_event_type(name, label)
    console.print(f"event type '{name}' relabelled")


@event_types.command("retire")
def event_type_retire(name: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Retire an event type: no new template nor publication of that type."""
    with _design(config, db) as design:
        design.retire_event_type(name)
    console.print(f"event type '{name}' retired")


# -- templates ---------------------------------------------------------------------------


@templates.command("add")
def template_add(
    name: str,
    event_type: Annotated[str, typer.Option("--type", help="event type")],
    channel: ChannelOption = None,
    folder: FolderOption = None,
    label: LabelOption = None,
    file: ContentFile = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Create a template for an event type, channel and folder."""
    with _design(config, db) as design:
        new = _valid(
            TemplateIn,
            "template",
            name=name,
            label=label or name,
            event_type=event_type,
            channel=channel,
            folder=folder,
            content=_content(file) if file else None,
        )
        created = design.create_template(new)
    console.print(
        f"template '{created.name}' created for ({created.event_type}, {created.channel.label}"
        + (f", folder {created.folder})" if created.folder else ")")
    )


@templates.command("edit")
def template_edit(
    name: str,
    event_type: TypeOption = None,
    channel: ChannelOption = None,
    folder: FolderOption = None,
    label: LabelOption = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="content fields to replace, as TOML or JSON"),
    ] = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Edit a template; the content file replaces only the parts it holds."""
    with _design(config, db) as design:
        patch = _valid(
            TemplatePatch,
            "template",
            label=label,
            event_type=event_type,
            channel=channel,
            folder=folder,
            content=_content(file) if file else None,
        )
        design.edit_template(name, patch)
    console.print(f"template '{name}' saved")


@templates.command("copy")
def template_copy(
    name: str,
    new_name: Annotated[str, typer.Argument(help="name of the copy")],
    event_type: TypeOption = None,
    channel: ChannelOption = None,
    folder: FolderOption = None,
    label: LabelOption = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Copy a template (content and seeds); the copy needs its own type, channel or folder."""
    with _design(config, db) as design:
        copy = _valid(
            TemplateCopy,
            "copy",
            name=new_name,
            label=label,
            event_type=event_type,
            channel=channel,
            folder=folder,
        )
        design.copy_template(name, copy)
    console.print(f"template '{name}' copied to '{new_name}'")


@templates.command("list")
def template_list(config: ConfigOption = None, db: DbOption = None) -> None:
    """List templates."""
    with _design(config, db) as design:
        found = design.list_templates()
    table = Table("template", "event type", "channel", "folder", "published", "label")
    for t in found:
        table.add_row(
            t.name,
            t.event_type,
            t.channel.label,
            t.folder or "",
            f"v{t.published_version}" if t.published else "no",
            escape(t.label),
        )
    console.print(table)


@templates.command("show")
def template_show(name: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Print a template's content as JSON."""
    with _design(config, db) as design:
        found = design.get_template(name)
    typer.echo(found.content.model_dump_json(exclude={"blocks"}, indent=2))


@templates.command("remove")
def template_remove(name: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Delete an unpublished template with its seeds and proofs."""
    with _design(config, db) as design:
        design.delete_template(name)
    console.print(f"template '{name}' deleted")


# -- blocks ------------------------------------------------------------------------------


@blocks.command("set")
def block_set(
    name: str,
    file: Annotated[Path, typer.Option("--file", help="the block's source")],
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Create a block, or replace its source."""
    with _design(config, db) as design:
        new = _valid(BlockIn, "block", name=name, content=_read(file))
        _block, created = design.set_block(new)
        done = "created" if created else "replaced"
    console.print(f"block '{name}' {done}")


@blocks.command("list")
def block_list(config: ConfigOption = None, db: DbOption = None) -> None:
    """List blocks."""
    with _design(config, db) as design:
        found = design.list_blocks()
    table = Table("block", "updated", "size")
    for b in found:
        table.add_row(b.name, b.updated.isoformat(timespec="seconds"), f"{len(b.content)} chars")
    console.print(table)


@blocks.command("remove")
def block_remove(name: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """Delete a block that no template includes."""
    with _design(config, db) as design:
        design.delete_block(name)
    console.print(f"block '{name}' deleted")


# -- seeds -------------------------------------------------------------------------------


def _seed_input(
    label: str, address: str, external_id: str | None, ctx_file: Path, ctx_format: str | None
) -> SeedIn:
    fmt = ctx_format or ("xml" if ctx_file.suffix.lower() == ".xml" else "json")
    return _valid(
        SeedIn,
        "seed",
        label=label,
        address=address,
        external_id=external_id,
        ctx=_read(ctx_file),
        ctx_format=fmt,
    )


CtxFile = Annotated[
    Path, typer.Option("--ctx-file", help="test ctx: an XML element or a JSON object")
]
CtxFormatOption = Annotated[
    str | None, typer.Option("--format", help="xml or json (default: from the file's extension)")
]


@seeds.command("add")
def seed_add(
    template: str,
    label: Annotated[str, typer.Option(help="the seed's name")],
    address: Annotated[str, typer.Option(help="email address, phone number or device token")],
    ctx_file: CtxFile,
    external_id: Annotated[
        str | None, typer.Option(help="external id of the test recipient")
    ] = None,
    ctx_format: CtxFormatOption = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Add a seed to a template."""
    with _design(config, db) as design:
        new = _seed_input(label, address, external_id, ctx_file, ctx_format)
        added = design.add_seed(template, new)
    console.print(f"seed {added.id} added to '{template}'")


@seeds.command("list")
def seed_list(template: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """List a template's seeds."""
    with _design(config, db) as design:
        found = design.list_seeds(template)
    table = Table("id", "label", "address", "external id", "ctx")
    for s in found:
        table.add_row(str(s.id), escape(s.label), s.address, s.external_id or "", s.ctx_format)
    console.print(table)


@seeds.command("remove")
def seed_remove(
    template: str, seed_id: int, config: ConfigOption = None, db: DbOption = None
) -> None:
    """Delete a seed."""
    with _design(config, db) as design:
        design.delete_seed(template, seed_id)
    console.print(f"seed {seed_id} of '{template}' deleted")


# -- preview and proofs ------------------------------------------------------------------


@commands.command("preview")
def preview(
    template: str,
    seed: Annotated[int | None, typer.Option(help="id of a seed of the template")] = None,
    ctx_file: Annotated[
        Path | None, typer.Option("--ctx-file", help="an inline seed's ctx instead of --seed")
    ] = None,
    address: Annotated[str | None, typer.Option(help="the inline seed's address")] = None,
    ctx_format: CtxFormatOption = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Render a template for a seed, exactly as an execution instance will."""
    with _design(config, db) as design:
        if (seed is None) == (ctx_file is None):
            raise InvalidInputError("no seed", detail="give --seed ID, or --ctx-file and --address")
        chosen: int | SeedIn
        if seed is not None:
            chosen = seed
        else:
            assert ctx_file is not None
            chosen = _seed_input("inline seed", address or "", None, ctx_file, ctx_format)
        shown = design.preview(template, chosen)
    console.print(
        f"[bold]{shown.spec.template}[/bold] v{shown.spec.version} for {escape(shown.seed.address)}"
        + (
            f" (blocks: {', '.join(sorted(shown.spec.content.blocks))})"
            if shown.spec.content.blocks
            else ""
        )
    )
    message = shown.message
    for part in ("subject", "html", "text", "sms", "push_title", "push_body"):
        value = getattr(message, part)
        if value:
            console.rule(part)
            typer.echo(value)


@commands.command("proof")
def proof(
    template: str,
    seed: Annotated[int, typer.Option(help="id of the seed to mail")],
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Mail a template rendered for a seed to the seed's address, through the SMTP relay of the settings."""
    with _design(config, db) as design:
        sent = asyncio.run(design.send_proof(template, seed, cli_login()))
    if sent.status != "sent":
        console.print(f"[red]proof {sent.id} failed:[/red] {escape(sent.reason or '')}")
        raise typer.Exit(1)
    console.print(f"proof {sent.id} sent to {sent.address}: {escape(sent.reason or '')}")


@commands.command("proofs")
def proofs(template: str, config: ConfigOption = None, db: DbOption = None) -> None:
    """List a template's proofs, newest first."""
    with _design(config, db) as design:
        found = design.list_proofs(template)
    table = Table("id", "at", "seed", "address", "status", "by", "reason")
    for p in found:
        table.add_row(
            str(p.id),
            p.at.isoformat(timespec="seconds"),
            str(p.seed_id),
            p.address,
            p.status,
            p.sent_by,
            escape(p.reason or ""),
        )
    console.print(table)
