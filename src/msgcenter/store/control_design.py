"""Named queries on a control instance's design objects: event types, templates, blocks, seeds, proofs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from datetime import datetime
from typing import Any

import sqlalchemy.exc
from sqlalchemy import ColumnElement, Connection, RowMapping, Table, delete, insert, select, update

from msgcenter.designs import Block, EventType, Proof, Seed, Template
from msgcenter.errors import ConflictError, NotFoundError
from msgcenter.events.model import Channel
from msgcenter.publications import PublishedContent
from msgcenter.store.tables import (
    block,
    event_type,
    instance_publication,
    proof,
    publication_log,
    seed,
    template,
    template_version,
)

# -- event types ------------------------------------------------------------------------


def _event_type(row: RowMapping) -> EventType:
    return EventType(row["name"], row["label"], row["retired"], row["created"], row["updated"])


def add_event_type(conn: Connection, name: str, label: str, now: datetime) -> EventType:
    """Declare an event type; :class:`ConflictError` if it exists."""
    with _unique(conn, f"event type '{name}' already exists"):
        conn.execute(
            insert(event_type).values(
                name=name, label=label, retired=False, created=now, updated=now
            )
        )
    return get_event_type(conn, name)


def get_event_type(conn: Connection, name: str) -> EventType:
    """The event type ``name``, retired or not; :class:`NotFoundError` if undeclared."""
    row = conn.execute(select(event_type).where(event_type.c.name == name)).mappings().first()
    if row is None:
        raise NotFoundError(f"no event type '{name}'")
    return _event_type(row)


def list_event_types(conn: Connection) -> list[EventType]:
    """Every event type, by name."""
    rows = conn.execute(select(event_type).order_by(event_type.c.name)).mappings()
    return [_event_type(row) for row in rows]


def relabel_event_type(conn: Connection, name: str, label: str, now: datetime) -> EventType:
    """Give an event type a new label."""
    _change(
        conn,
        event_type,
        event_type.c.name == name,
        f"no event type '{name}'",
        label=label,
        updated=now,
    )
    return get_event_type(conn, name)


def published_templates_of_type(conn: Connection, name: str) -> list[str]:
    """The names of the published templates of event type ``name``."""
    return sorted(
        conn.execute(
            select(template.c.name).where(
                template.c.event_type == name, template.c.published.is_(True)
            )
        )
        .scalars()
        .all()
    )


def retire_event_type(conn: Connection, name: str, now: datetime) -> EventType:
    """Retire an event type."""
    _change(
        conn,
        event_type,
        event_type.c.name == name,
        f"no event type '{name}'",
        retired=True,
        updated=now,
    )
    return get_event_type(conn, name)


# -- templates ---------------------------------------------------------------------------


def _template(row: RowMapping) -> Template:
    return Template(
        id=row["id"],
        name=row["name"],
        label=row["label"],
        event_type=row["event_type"],
        channel=Channel(row["channel"]),
        folder=row["folder"] or None,
        content=PublishedContent.model_validate_json(row["content"]),
        published_version=row["published_version"],
        published=row["published"],
        created=row["created"],
        updated=row["updated"],
    )


def add_template(
    conn: Connection,
    name: str,
    label: str,
    event_type_name: str,
    channel: Channel,
    folder: str | None,
    content: PublishedContent,
    now: datetime,
) -> Template:
    """Create a template; :class:`ConflictError` if the name or its (type, channel, folder) is taken."""
    _route_free(conn, event_type_name, channel, folder, None)
    with _unique(conn, f"template '{name}' already exists"):
        conn.execute(
            insert(template).values(
                name=name,
                label=label,
                event_type=event_type_name,
                channel=int(channel),
                folder=folder or "",
                content=content.model_dump_json(exclude={"blocks"}),
                published_version=0,
                published=False,
                created=now,
                updated=now,
            )
        )
    return get_template(conn, name)


def get_template(conn: Connection, name: str) -> Template:
    """The template ``name``; :class:`NotFoundError` if there is none."""
    row = conn.execute(select(template).where(template.c.name == name)).mappings().first()
    if row is None:
        raise NotFoundError(f"no template '{name}'")
    return _template(row)


def list_templates(conn: Connection) -> list[Template]:
    """Every template, by name."""
    rows = conn.execute(select(template).order_by(template.c.name)).mappings()
    return [_template(row) for row in rows]


def update_template(
    conn: Connection,
    current: Template,
    *,
    label: str,
    event_type_name: str,
    channel: Channel,
    folder: str | None,
    content: PublishedContent,
    now: datetime,
) -> Template:
    """Replace a template's label, route and content."""
    _route_free(conn, event_type_name, channel, folder, current.id)
    with _unique(
        conn,
        f"another template serves ({event_type_name}, {channel.label}, {folder or 'no folder'})",
    ):
        conn.execute(
            update(template)
            .where(template.c.id == current.id)
            .values(
                label=label,
                event_type=event_type_name,
                channel=int(channel),
                folder=folder or "",
                content=content.model_dump_json(exclude={"blocks"}),
                updated=now,
            )
        )
    return get_template(conn, current.name)


def delete_template(conn: Connection, template_id: int) -> None:
    """Delete a template with its seeds, proofs and publication history.

    The history goes too: SQLite may give a later template the same id.
    """
    for table in (seed, proof, template_version, publication_log, instance_publication):
        conn.execute(delete(table).where(table.c.template_id == template_id))
    conn.execute(delete(template).where(template.c.id == template_id))


def _route_free(
    conn: Connection, type_name: str, channel: Channel, folder: str | None, own_id: int | None
) -> None:
    taken = conn.execute(
        select(template.c.id, template.c.name).where(
            template.c.event_type == type_name,
            template.c.channel == int(channel),
            template.c.folder == (folder or ""),
        )
    ).first()
    if taken is not None and taken.id != own_id:
        raise ConflictError(
            "one template per event type, channel and folder",
            detail=f"template '{taken.name}' already serves ({type_name}, {channel.label}, "
            f"{'folder ' + repr(folder) if folder else 'no folder'})",
        )


# -- blocks ------------------------------------------------------------------------------


def _block(row: RowMapping) -> Block:
    return Block(row["name"], row["content"], row["created"], row["updated"])


def add_block(conn: Connection, name: str, content: str, now: datetime) -> Block:
    """Create a block; :class:`ConflictError` if the name is taken."""
    with _unique(conn, f"block '{name}' already exists"):
        conn.execute(insert(block).values(name=name, content=content, created=now, updated=now))
    return get_block(conn, name)


def get_block(conn: Connection, name: str) -> Block:
    """The block ``name``; :class:`NotFoundError` if there is none."""
    row = conn.execute(select(block).where(block.c.name == name)).mappings().first()
    if row is None:
        raise NotFoundError(f"no block '{name}'")
    return _block(row)


def list_blocks(conn: Connection) -> list[Block]:
    """Every block, by name."""
    return [_block(row) for row in conn.execute(select(block).order_by(block.c.name)).mappings()]


def block_sources(conn: Connection) -> dict[str, str]:
    """Every block's source by name (what templates compile with)."""
    return {row.name: row.content for row in conn.execute(select(block.c.name, block.c.content))}


def update_block(conn: Connection, name: str, content: str, now: datetime) -> Block:
    """Replace a block's source."""
    _change(conn, block, block.c.name == name, f"no block '{name}'", content=content, updated=now)
    return get_block(conn, name)


def delete_block(conn: Connection, name: str) -> None:
    """Delete a block (the caller checks that no template uses it)."""
    _change(conn, block, block.c.name == name, f"no block '{name}'", delete_row=True)


# -- seeds -------------------------------------------------------------------------------


def _seed(row: RowMapping) -> Seed:
    return Seed(
        id=row["id"],
        template_id=row["template_id"],
        label=row["label"],
        address=row["address"],
        external_id=row["external_id"],
        ctx=row["ctx"],
        ctx_format=row["ctx_format"],
    )


def add_seed(conn: Connection, new: Seed, now: datetime) -> Seed:
    """Store a seed of ``new.template_id`` (``new.id`` is ignored)."""
    values = _seed_values(new)
    seed_id = conn.execute(
        insert(seed)
        .values(**values, template_id=new.template_id, created=now, updated=now)
        .returning(seed.c.id)
    ).scalar_one()
    return get_seed(conn, new.template_id, seed_id)


def get_seed(conn: Connection, template_id: int, seed_id: int) -> Seed:
    """Seed ``seed_id`` of the template; :class:`NotFoundError` if the template has no such seed."""
    row = (
        conn.execute(select(seed).where(seed.c.id == seed_id, seed.c.template_id == template_id))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(f"no seed {seed_id} for this template")
    return _seed(row)


def list_seeds(conn: Connection, template_id: int) -> list[Seed]:
    """The template's seeds, oldest first."""
    rows = conn.execute(select(seed).where(seed.c.template_id == template_id).order_by(seed.c.id))
    return [_seed(row) for row in rows.mappings()]


def update_seed(conn: Connection, changed: Seed, now: datetime) -> Seed:
    """Replace a seed's label, address, external id and ctx."""
    assert changed.id is not None
    _change(
        conn,
        seed,
        (seed.c.id == changed.id) & (seed.c.template_id == changed.template_id),
        f"no seed {changed.id} for this template",
        **_seed_values(changed),
        updated=now,
    )
    return get_seed(conn, changed.template_id, changed.id)


def delete_seed(conn: Connection, template_id: int, seed_id: int) -> None:
    """Delete a seed (its proofs stay listed)."""
    _change(
        conn,
        seed,
        (seed.c.id == seed_id) & (seed.c.template_id == template_id),
        f"no seed {seed_id} for this template",
        delete_row=True,
    )


def _seed_values(value: Seed) -> dict[str, Any]:
    return {
        "label": value.label,
        "address": value.address,
        "external_id": value.external_id,
        "ctx": value.ctx,
        "ctx_format": value.ctx_format,
    }


# -- proofs ------------------------------------------------------------------------------


def _proof(row: RowMapping) -> Proof:
    return Proof(
        id=row["id"],
        template_id=row["template_id"],
        seed_id=row["seed_id"],
        address=row["address"],
        subject=row["subject"],
        status=row["status"],
        reason=row["reason"],
        sent_by=row["sent_by"],
        at=row["at"],
    )


def add_proof(
    conn: Connection,
    template_id: int,
    seed_id: int,
    address: str,
    subject: str,
    status: str,
    reason: str | None,
    sent_by: str,
    now: datetime,
) -> Proof:
    """Record a proof and its outcome ("sent" or "failed")."""
    recorded = Proof(0, template_id, seed_id, address, subject, status, reason, sent_by, now)
    values = {f.name: getattr(recorded, f.name) for f in fields(Proof) if f.name != "id"}
    proof_id = conn.execute(insert(proof).values(values).returning(proof.c.id)).scalar_one()
    return replace(recorded, id=proof_id)


def list_proofs(conn: Connection, template_id: int) -> list[Proof]:
    """The template's proofs, newest first."""
    rows = conn.execute(
        select(proof).where(proof.c.template_id == template_id).order_by(proof.c.id.desc())
    )
    return [_proof(row) for row in rows.mappings()]


# -- helpers -----------------------------------------------------------------------------


@contextmanager
def _unique(conn: Connection, message: str) -> Iterator[None]:
    """Turn a unique-constraint violation into :class:`ConflictError`; the transaction goes on."""
    try:
        with conn.begin_nested():
            yield
    except sqlalchemy.exc.IntegrityError as exc:
        raise ConflictError(message) from exc


def _change(
    conn: Connection,
    table: Table,
    where: ColumnElement[bool],
    missing: str,
    *,
    delete_row: bool = False,
    **values: Any,
) -> None:
    """Update (or delete) the rows ``where`` selects; :class:`NotFoundError` with ``missing`` if none."""
    statement = (
        delete(table).where(where) if delete_row else update(table).where(where).values(values)
    )
    if conn.execute(statement).rowcount == 0:
        raise NotFoundError(missing)
