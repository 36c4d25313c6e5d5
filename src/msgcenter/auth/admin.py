"""Operators' accounts administered from the CLI (SPEC §3.9): add, list, change a password,
remove. Passwords are hashed here, never stored or logged as given."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from msgcenter.auth.passwords import hash_password
from msgcenter.operators import Operator, parse_login, parse_networks, parse_rights
from msgcenter.store import operators as operator_store
from msgcenter.store.database import Database


class OperatorAdmin:
    """The operators of one instance's database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self,
        login: str,
        password: str,
        rights: str,
        *,
        trusted: Iterable[str] = (),
        folder: str | None = None,
        correlation_idempotency: bool = False,
    ) -> Operator:
        """Create an operator; rights are comma-separated (``mc_push,mc_admin``), ``trusted``
        CIDR masks (none: any address). :class:`~msgcenter.errors.ConflictError` if the
        login is taken."""
        checked = parse_login(login)
        granted, networks = parse_rights(rights), parse_networks(list(trusted))
        password_hash = hash_password(password)
        with self._db.write() as conn:
            return operator_store.add(
                conn,
                checked,
                password_hash,
                granted,
                networks,
                folder,
                datetime.now(UTC),
                correlation_idempotency=correlation_idempotency,
            )

    def list(self) -> list[Operator]:
        """Every operator, by login."""
        with self._db.read() as conn:
            return operator_store.list_all(conn)

    def set_password(self, login: str, password: str) -> None:
        """Change an operator's password; its sessions end."""
        password_hash = hash_password(password)
        with self._db.write() as conn:
            operator_store.set_password(conn, login, password_hash, datetime.now(UTC))

    def remove(self, login: str) -> None:
        """Delete an operator and its sessions."""
        with self._db.write() as conn:
            operator_store.remove(conn, login)
