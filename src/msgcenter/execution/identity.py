"""The identity of an execution instance: the instance id its control instance assigns
("Initialize connection", SPEC §4)."""

from __future__ import annotations

from datetime import UTC, datetime

from msgcenter.store import instance_info
from msgcenter.store.database import Database


class IdentityService:
    """Reads and assigns this execution instance's id."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def instance_id(self) -> str | None:
        """The id assigned by a control instance (None until then)."""
        with self._db.read() as conn:
            return instance_info.instance_id(conn)

    def assign(self, instance_id: str, *, force: bool) -> None:
        """Store ``instance_id``; :class:`~msgcenter.errors.ConflictError` if another is stored,
        unless ``force``."""
        with self._db.write() as conn:
            instance_info.assign_instance_id(conn, instance_id, datetime.now(UTC), force=force)
