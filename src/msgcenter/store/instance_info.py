"""Named queries on an execution instance's identity (the ``instance_info`` facts)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select, update

from msgcenter.errors import ConflictError
from msgcenter.store.database import insert_or_ignore
from msgcenter.store.tables import instance_info

INSTANCE_ID = "instance_id"
#: a random tag drawn by the first worker, part of every Message-ID (unique per database)
INSTALLATION_TAG = "installation_tag"


def instance_id(conn: Connection) -> str | None:
    """The id the control instance assigned ("Initialize connection"), or None."""
    return conn.execute(
        select(instance_info.c.value).where(instance_info.c.key == INSTANCE_ID)
    ).scalar_one_or_none()


def assign_instance_id(conn: Connection, new_id: str, now: datetime, *, force: bool) -> None:
    """Store ``new_id``; :class:`ConflictError` if another id is stored, unless ``force``."""
    insert_or_ignore(
        conn, instance_info, {"key": INSTANCE_ID, "value": new_id, "updated": now}, ["key"]
    )
    held = instance_id(conn)
    if held == new_id:
        return
    if not force:
        raise ConflictError(
            "this execution instance already has an instance id",
            detail=(
                f"this execution instance already holds instance id '{held}', not '{new_id}' "
                "(initialized by another control instance or registration?); "
                "initialize with force to replace it"
            ),
        )
    conn.execute(
        update(instance_info)
        .where(instance_info.c.key == INSTANCE_ID)
        .values(value=new_id, updated=now)
    )


def installation_tag(conn: Connection, candidate: str, now: datetime) -> str:
    """The random tag that makes this database's Message-IDs unique: ``candidate`` is stored
    the first time (by whichever process asks first) and the stored tag returned ever after."""
    insert_or_ignore(
        conn, instance_info, {"key": INSTALLATION_TAG, "value": candidate, "updated": now}, ["key"]
    )
    return str(
        conn.execute(
            select(instance_info.c.value).where(instance_info.c.key == INSTALLATION_TAG)
        ).scalar_one()
    )
