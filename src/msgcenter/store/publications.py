"""Named queries on publications."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, RowMapping, func, insert, select, update

from msgcenter.events.model import Channel, Queue
from msgcenter.publications import Publication, PublicationSpec, PublishedContent
from msgcenter.store.tables import publication


def _from_row(row: RowMapping) -> Publication:
    return Publication(
        id=row["id"],
        template=row["template"],
        event_type=row["event_type"],
        channel=Channel(row["channel"]),
        folder=row["folder"],
        queue=Queue(row["queue"]),
        version=row["version"],
        published_at=row["published_at"],
        content=PublishedContent.model_validate_json(row["content"]),
        active=row["active"],
    )


def put(conn: Connection, spec: PublicationSpec, now: datetime) -> list[Publication]:
    """Store both flavours of ``spec`` and retire the previous versions of the template."""
    _retire(conn, spec.template, spec.folder, now)
    published_at = spec.published_at or now
    content = spec.content.model_dump_json()
    stored = []
    for queue in Queue:
        new_id = conn.execute(
            insert(publication)
            .values(
                template=spec.template,
                event_type=spec.event_type,
                channel=int(spec.channel),
                folder=spec.folder,
                queue=queue.value,
                version=spec.version,
                published_at=published_at,
                content=content,
                fallback_channel=(
                    None
                    if spec.content.fallback_channel is None
                    else int(spec.content.fallback_channel)
                ),
                active=True,
                created=now,
            )
            .returning(publication.c.id)
        ).scalar_one()
        stored.append(
            Publication(
                new_id,
                spec.template,
                spec.event_type,
                spec.channel,
                spec.folder,
                queue,
                spec.version,
                published_at,
                spec.content,
            )
        )
    return stored


def remove(conn: Connection, template: str, folder: str | None, now: datetime) -> int:
    """Unpublish: retire both flavours of ``template`` in ``folder``; returns how many rows."""
    return _retire(conn, template, folder, now)


def _retire(conn: Connection, template: str, folder: str | None, now: datetime) -> int:
    folder_match = (
        publication.c.folder.is_(None) if folder is None else publication.c.folder == folder
    )
    return conn.execute(
        update(publication)
        .where(publication.c.template == template, folder_match, publication.c.active.is_(True))
        .values(active=False, retired=now)
    ).rowcount


def list_active(
    conn: Connection, folder: str | None = None, *, any_folder: bool = False
) -> list[Publication]:
    """Active publications (of ``folder``, or of every folder), newest first."""
    query = select(publication).where(publication.c.active.is_(True))
    if not any_folder:
        query = query.where(
            publication.c.folder.is_(None) if folder is None else publication.c.folder == folder
        )
    query = query.order_by(publication.c.published_at.desc(), publication.c.id.desc())
    return [_from_row(row) for row in conn.execute(query).mappings()]


def get(conn: Connection, publication_id: int) -> Publication | None:
    """One publication flavour by id (active or retired)."""
    row = (
        conn.execute(select(publication).where(publication.c.id == publication_id))
        .mappings()
        .first()
    )
    return None if row is None else _from_row(row)


def change_marker(conn: Connection) -> tuple[int, int]:
    """A cheap fingerprint of the publication set: changes whenever one is put or removed."""
    row = conn.execute(
        select(func.coalesce(func.max(publication.c.id), 0), func.count()).where(
            publication.c.active.is_(True)
        )
    ).one()
    return int(row[0]), int(row[1])


def routes_in_force(conn: Connection) -> set[tuple[str, str, str | None]]:
    """The ``(event type, queue, folder)`` of every active publication (any channel)."""
    query = select(publication.c.event_type, publication.c.queue, publication.c.folder).where(
        publication.c.active.is_(True)
    )
    return {(row[0], row[1], row[2]) for row in conn.execute(query.distinct())}
