"""Named queries on publication from a control instance: versions, the log, and where each
template stands on each execution instance (SPEC §4).

A template's wanted state is ``template.published`` at ``template.published_version``.
An ``instance_publication`` row is ``pending`` while its execution instance has not
caught up with that; a push marks it done only if the wanted state did not move
meanwhile (the template row is locked for that check), so a late success of an
older push never hides a newer version.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy.exc
from sqlalchemy import Connection, and_, insert, select, update

from msgcenter.designs import Template
from msgcenter.errors import ConflictError
from msgcenter.publications import (
    PENDING,
    PUBLISHED,
    UNPUBLISHED,
    InstanceState,
    LogEntry,
    PendingPush,
    PublicationSpec,
    PublicationState,
    PublishedVersion,
)
from msgcenter.store.control_design import get_template
from msgcenter.store.control_instances import instance_from_row
from msgcenter.store.database import dialect_insert
from msgcenter.store.tables import (
    exec_instance,
    instance_publication,
    publication_log,
    template,
    template_version,
)


def record_publish(
    conn: Connection, of: Template, spec: PublicationSpec, operator: str, now: datetime
) -> None:
    """Freeze ``spec`` as the template's new version, log it, and mark every enabled instance pending."""
    moved = conn.execute(
        update(template)
        .where(template.c.id == of.id, template.c.published_version == of.published_version)
        .values(published_version=spec.version, published=True)
    ).rowcount
    if not moved:
        raise _concurrent(of.name)
    try:
        with conn.begin_nested():
            conn.execute(
                insert(template_version).values(
                    template_id=of.id,
                    version=spec.version,
                    spec=spec.model_dump_json(),
                    published_at=now,
                    published_by=operator,
                )
            )
    except sqlalchemy.exc.IntegrityError as exc:
        raise _concurrent(of.name) from exc
    _log(conn, of.id, "publish", spec.version, operator, now)
    enabled = select(exec_instance.c.id).where(exec_instance.c.enabled.is_(True))
    for instance_id in conn.execute(enabled).scalars():
        _mark_pending(conn, instance_id, of.id, now)


def record_unpublish(conn: Connection, of: Template, operator: str, now: datetime) -> None:
    """Mark the template unpublished, log it, and mark pending every enabled instance that had it."""
    moved = conn.execute(
        update(template)
        .where(template.c.id == of.id, template.c.published.is_(True))
        .values(published=False)
    ).rowcount
    if not moved:
        raise ConflictError(f"template '{of.name}' is not published")
    _log(conn, of.id, "unpublish", of.published_version, operator, now)
    conn.execute(
        update(instance_publication)
        .where(
            instance_publication.c.template_id == of.id,
            instance_publication.c.exec_instance_id.in_(
                select(exec_instance.c.id).where(exec_instance.c.enabled.is_(True))
            ),
        )
        .values(state=PENDING, updated=now)
    )


def reconcile_instance(conn: Connection, exec_instance_id: int, now: datetime) -> None:
    """Mark pending every template whose wanted state an (added or re-enabled) instance lacks."""
    rows = conn.execute(
        select(
            template.c.id,
            template.c.published,
            template.c.published_version,
            instance_publication.c.state,
            instance_publication.c.version,
        )
        .select_from(
            template.outerjoin(
                instance_publication,
                and_(
                    instance_publication.c.template_id == template.c.id,
                    instance_publication.c.exec_instance_id == exec_instance_id,
                ),
            )
        )
        .where(template.c.published_version > 0)
    )
    for row in rows.all():
        if row.published:
            behind = row.state != PUBLISHED or row.version != row.published_version
        else:
            behind = row.state is not None and row.state != UNPUBLISHED
        if behind:
            _mark_pending(conn, exec_instance_id, row.id, now)


def pending(
    conn: Connection, *, instance: str | None = None, template_name: str | None = None
) -> list[PendingPush]:
    """What enabled instances have not caught up with (of one instance, or one template)."""
    query = (
        select(
            exec_instance,
            template.c.id.label("template_id"),
            template.c.name.label("template_name"),
            template.c.folder.label("template_folder"),
            template.c.published.label("template_published"),
            template_version.c.spec,
        )
        .select_from(
            instance_publication.join(
                exec_instance, exec_instance.c.id == instance_publication.c.exec_instance_id
            )
            .join(template, template.c.id == instance_publication.c.template_id)
            .outerjoin(
                template_version,
                and_(
                    template_version.c.template_id == template.c.id,
                    template_version.c.version == template.c.published_version,
                ),
            )
        )
        .where(instance_publication.c.state == PENDING, exec_instance.c.enabled.is_(True))
        .order_by(exec_instance.c.name, template.c.name)
    )
    if instance is not None:
        query = query.where(exec_instance.c.name == instance)
    if template_name is not None:
        query = query.where(template.c.name == template_name)
    return [
        PendingPush(
            instance=instance_from_row(row),
            template_id=row["template_id"],
            template=row["template_name"],
            folder=row["template_folder"] or None,
            spec=(
                PublicationSpec.model_validate_json(row["spec"])
                if row["template_published"]
                else None
            ),
        )
        for row in conn.execute(query).mappings()
    ]


def record_done(
    conn: Connection, exec_instance_id: int, template_id: int, version: int | None, now: datetime
) -> bool:
    """Record that an instance now has ``version`` (None: has it unpublished).

    Returns False (and the row stays pending) when the wanted state moved meanwhile.
    """
    wanted = conn.execute(
        select(template.c.published, template.c.published_version)
        .where(template.c.id == template_id)
        .with_for_update()
    ).one()
    caught_up = (
        not wanted.published
        if version is None
        else wanted.published and wanted.published_version == version
    )
    values: dict[str, object] = {"last_attempt": now, "updated": now}
    if caught_up:
        values |= {
            "state": UNPUBLISHED if version is None else PUBLISHED,
            "version": version or 0,
            "failure_reason": None,
        }
    conn.execute(
        update(instance_publication)
        .where(
            instance_publication.c.exec_instance_id == exec_instance_id,
            instance_publication.c.template_id == template_id,
        )
        .values(**values)
    )
    return caught_up


def record_failure(
    conn: Connection, exec_instance_id: int, template_ids: list[int], reason: str, now: datetime
) -> None:
    """Keep these templates pending on the instance, with why the last attempt failed."""
    conn.execute(
        update(instance_publication)
        .where(
            instance_publication.c.exec_instance_id == exec_instance_id,
            instance_publication.c.template_id.in_(template_ids),
            instance_publication.c.state == PENDING,
        )
        .values(failure_reason=reason, last_attempt=now, updated=now)
    )


def state(conn: Connection, name: str) -> PublicationState:
    """A template's publication state on every registered instance, and its log."""
    of = get_template(conn, name)
    rows = conn.execute(
        select(
            exec_instance.c.name,
            exec_instance.c.enabled,
            instance_publication.c.state,
            instance_publication.c.version,
            instance_publication.c.failure_reason,
            instance_publication.c.last_attempt,
        )
        .select_from(
            exec_instance.outerjoin(
                instance_publication,
                and_(
                    instance_publication.c.exec_instance_id == exec_instance.c.id,
                    instance_publication.c.template_id == of.id,
                ),
            )
        )
        .order_by(exec_instance.c.name)
    )
    instances = [
        InstanceState(
            r.name,
            r.enabled,
            r.state or UNPUBLISHED,
            r.version or 0,
            r.failure_reason,
            r.last_attempt,
        )
        for r in rows
    ]
    log = [
        LogEntry(r.action, r.version, r.operator, r.at)
        for r in conn.execute(
            select(publication_log)
            .where(publication_log.c.template_id == of.id)
            .order_by(publication_log.c.id.desc())
        )
    ]
    return PublicationState(of.name, of.published, of.published_version, instances, log)


def _mark_pending(conn: Connection, exec_instance_id: int, template_id: int, now: datetime) -> None:
    conn.execute(
        dialect_insert(conn, instance_publication)
        .values(
            exec_instance_id=exec_instance_id,
            template_id=template_id,
            version=0,
            state=PENDING,
            updated=now,
        )
        .on_conflict_do_update(
            index_elements=["exec_instance_id", "template_id"],
            set_={"state": PENDING, "updated": now},
        )
    )


def _log(
    conn: Connection, template_id: int, action: str, version: int, operator: str, now: datetime
) -> None:
    conn.execute(
        insert(publication_log).values(
            template_id=template_id, action=action, version=version, operator=operator, at=now
        )
    )


def _concurrent(name: str) -> ConflictError:
    return ConflictError(
        f"template '{name}' was published concurrently",
        detail="try again: another publication just ran",
    )


def versions(conn: Connection, name: str) -> list[PublishedVersion]:
    """Every version of template ``name`` ever published, newest first."""
    of = get_template(conn, name)
    rows = conn.execute(
        select(template_version)
        .where(template_version.c.template_id == of.id)
        .order_by(template_version.c.version.desc())
    ).mappings()
    return [
        PublishedVersion(
            row["version"],
            row["published_at"],
            row["published_by"],
            PublicationSpec.model_validate_json(row["spec"]),
        )
        for row in rows
    ]
