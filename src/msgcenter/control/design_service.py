"""Changes to templates, blocks and seeds, checked before they are stored (SPEC §4).

The REST API and the CLI both go through these, so both accept and refuse the
same designs with the same reasons: a template names a declared, non-retired
event type and compiles (syntax, blocks, sandbox) with its part and line; a
seed reads like an event an execution instance would accept.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import Connection

from msgcenter.control.design_checks import (
    check_block,
    check_content,
    check_seed_address,
    check_seed_ctx,
    seed_event,
)
from msgcenter.designs import (
    Block,
    BlockIn,
    Seed,
    SeedIn,
    Template,
    TemplateCopy,
    TemplateIn,
    TemplatePatch,
)
from msgcenter.errors import ConflictError
from msgcenter.events.model import Channel
from msgcenter.publications import PublishedContent, message_parts
from msgcenter.render import TemplateSyntaxProblem, compile_content, load_ctx
from msgcenter.store import control_design as store
from msgcenter.store.database import Database


def _now() -> datetime:
    return datetime.now(UTC)


# -- templates ---------------------------------------------------------------------------


def create_template(db: Database, new: TemplateIn) -> Template:
    """Create a template whose content compiles and whose event type is usable."""
    with db.write() as conn:
        store.usable_event_type(conn, new.event_type)
        _check(conn, new.content, new.event_type, new.channel, new.folder, template_id=None)
        return store.add_template(
            conn, new.name, new.label, new.event_type, new.channel, new.folder, new.content, _now()
        )


def edit_template(db: Database, name: str, patch: TemplatePatch) -> Template:
    """Apply ``patch``; a published template keeps its (type, channel, folder)."""
    with db.write() as conn:
        current = store.get_template(conn, name)
        event_type = patch.event_type or current.event_type
        channel = patch.channel if patch.channel is not None else current.channel
        folder = patch.folder if "folder" in patch.model_fields_set else current.folder
        if current.published and (event_type, channel, folder) != (
            current.event_type,
            current.channel,
            current.folder,
        ):
            raise ConflictError(
                f"template '{name}' is published",
                detail="its event type, channel and folder cannot change while it is published; unpublish it first",
            )
        if event_type != current.event_type:
            store.usable_event_type(conn, event_type)
        content = current.content
        if patch.content is not None:
            content = PublishedContent.model_validate(
                {**current.content.model_dump(), **patch.content.model_dump(exclude_unset=True)}
            )
        _check(conn, content, event_type, channel, folder, template_id=current.id)
        return store.update_template(
            conn,
            current,
            label=patch.label or current.label,
            event_type_name=event_type,
            channel=channel,
            folder=folder,
            content=content,
            now=_now(),
        )


def copy_template(db: Database, name: str, copy: TemplateCopy) -> Template:
    """A new, unpublished template with the content of ``name`` (and its seeds, on the same channel)."""
    with db.write() as conn:
        source = store.get_template(conn, name)
        event_type = copy.event_type or source.event_type
        store.usable_event_type(conn, event_type)
        channel = copy.channel if copy.channel is not None else source.channel
        now = _now()
        created = store.add_template(
            conn,
            copy.name,
            copy.label or source.label,
            event_type,
            channel,
            copy.folder if "folder" in copy.model_fields_set else source.folder,
            source.content,
            now,
        )
        if channel == source.channel:  # seed addresses belong to a channel
            for original in store.list_seeds(conn, source.id):
                store.add_seed(conn, replace(original, id=None, template_id=created.id), now)
        return created


def _check(
    conn: Connection,
    content: PublishedContent,
    event_type: str,
    channel: Channel,
    folder: str | None,
    *,
    template_id: int | None,
) -> None:
    seeds = store.list_seeds(conn, template_id) if template_id is not None else []
    check_content(
        content,
        store.block_sources(conn),
        seed_event(event_type, channel, folder),
        [load_ctx(s.ctx, s.ctx_format) for s in seeds],
    )


# -- blocks ------------------------------------------------------------------------------


def create_block(db: Database, new: BlockIn) -> Block:
    """Create a block that compiles (its own includes resolved)."""
    with db.write() as conn:
        blocks = store.block_sources(conn)
        if new.name in blocks:
            raise ConflictError(f"block '{new.name}' already exists")
        check_block(new.name, {**blocks, new.name: new.content})
        return store.add_block(conn, new.name, new.content, _now())


def edit_block(db: Database, name: str, content: str) -> Block:
    """Replace a block's source; the templates that include it take it at their next publication."""
    with db.write() as conn:
        store.get_block(conn, name)
        check_block(name, {**store.block_sources(conn), name: content})
        return store.update_block(conn, name, content, _now())


def delete_block(db: Database, name: str) -> None:
    """Delete a block that no template includes (:class:`ConflictError` naming them otherwise)."""
    with db.write() as conn:
        store.get_block(conn, name)
        users = templates_using(conn, name)
        if users:
            raise ConflictError(
                f"block '{name}' is in use", detail=f"included by template {', '.join(users)}"
            )
        store.delete_block(conn, name)


def templates_using(conn: Connection, block_name: str) -> list[str]:
    """The templates that include ``block_name``, directly or through another block."""
    blocks = store.block_sources(conn)
    users = []
    for candidate in store.list_templates(conn):
        try:
            compiled = compile_content(message_parts(candidate.content), blocks)
        except TemplateSyntaxProblem:
            continue  # one that does not compile is refused at publication anyway
        if block_name in compiled.blocks_used:
            users.append(candidate.name)
    return users


# -- seeds -------------------------------------------------------------------------------


def checked_seed(
    template: Template, new: SeedIn, *, max_ctx_bytes: int, seed_id: int | None = None
) -> Seed:
    """``new`` as a seed of ``template``, checked as an execution instance checks an event."""
    address, external_id = check_seed_address(template.channel, new.address, new.external_id)
    ctx = check_seed_ctx(new.ctx, new.ctx_format, max_bytes=max_ctx_bytes)
    return Seed(seed_id, template.id, new.label, address, external_id, ctx, new.ctx_format)


def add_seed(db: Database, template_name: str, new: SeedIn, *, max_ctx_bytes: int) -> Seed:
    """Add a seed to a template."""
    with db.write() as conn:
        found = store.get_template(conn, template_name)
        return store.add_seed(conn, checked_seed(found, new, max_ctx_bytes=max_ctx_bytes), _now())


def edit_seed(
    db: Database, template_name: str, seed_id: int, new: SeedIn, *, max_ctx_bytes: int
) -> Seed:
    """Replace a seed of a template."""
    with db.write() as conn:
        found = store.get_template(conn, template_name)
        store.get_seed(conn, found.id, seed_id)
        changed = checked_seed(found, new, max_ctx_bytes=max_ctx_bytes, seed_id=seed_id)
        return store.update_seed(conn, changed, _now())


def delete_seed(db: Database, template_name: str, seed_id: int) -> None:
    """Delete a seed of a template."""
    with db.write() as conn:
        store.delete_seed(conn, store.get_template(conn, template_name).id, seed_id)
