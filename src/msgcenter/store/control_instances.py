"""Named queries on the execution instances registered on a control instance (external accounts)."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Connection, RowMapping, insert, select, update

from msgcenter.errors import ConflictError, NotFoundError
from msgcenter.instances import ExecInstance
from msgcenter.store.tables import exec_instance


def instance_from_row(row: RowMapping) -> ExecInstance:
    """The instance in a row holding (at least) every ``exec_instance`` column."""
    return ExecInstance(**{f.name: row[f.name] for f in fields(ExecInstance)})


def add(conn: Connection, values: dict[str, Any], now: datetime) -> ExecInstance:
    """Register an instance from column ``values``; :class:`ConflictError` if the name is taken."""
    try:
        with conn.begin_nested():
            new_id = conn.execute(
                insert(exec_instance)
                .values(**values, created=now, updated=now)
                .returning(exec_instance.c.id)
            ).scalar_one()
    except sqlalchemy.exc.IntegrityError as exc:
        raise ConflictError(f"execution instance '{values['name']}' already exists") from exc
    return _by(conn, exec_instance.c.id == new_id)


def get(conn: Connection, name: str) -> ExecInstance:
    """The instance named ``name``; :class:`NotFoundError` if there is none."""
    found = (
        conn.execute(select(exec_instance).where(exec_instance.c.name == name)).mappings().first()
    )
    if found is None:
        raise NotFoundError(f"no execution instance named '{name}'")
    return instance_from_row(found)


def list_all(conn: Connection, *, enabled_only: bool = False) -> list[ExecInstance]:
    """Every registered instance (or the enabled ones), by name."""
    query = select(exec_instance).order_by(exec_instance.c.name)
    if enabled_only:
        query = query.where(exec_instance.c.enabled.is_(True))
    return [instance_from_row(row) for row in conn.execute(query).mappings()]


def change(conn: Connection, name: str, values: dict[str, Any], now: datetime) -> ExecInstance:
    """Set column ``values`` of the instance named ``name``; :class:`ConflictError` if an
    instance id is already held by another registration."""
    try:
        with conn.begin_nested():
            changed = conn.execute(
                update(exec_instance)
                .where(exec_instance.c.name == name)
                .values(**values, updated=now)
            ).rowcount
    except sqlalchemy.exc.IntegrityError as exc:
        raise ConflictError(
            f"instance id '{values.get('instance_id')}' belongs to another registration"
        ) from exc
    if not changed:
        raise NotFoundError(f"no execution instance named '{name}'")
    return get(conn, name)


def holder_of(conn: Connection, instance_id: str) -> str | None:
    """The name of the registration holding ``instance_id``, if any."""
    return conn.execute(
        select(exec_instance.c.name).where(exec_instance.c.instance_id == instance_id)
    ).scalar_one_or_none()


def _by(conn: Connection, condition: Any) -> ExecInstance:
    return instance_from_row(conn.execute(select(exec_instance).where(condition)).mappings().one())
