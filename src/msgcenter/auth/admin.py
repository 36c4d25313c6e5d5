"""Operators' accounts (SPEC §3.9): people with a password, and technical accounts with an
OAuth client id and secrets. Passwords and secrets are hashed here, never stored or logged as
given; a technical account's secret is shown once, when it is drawn."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection

from msgcenter.auth.passwords import hash_password
from msgcenter.errors import ConflictError
from msgcenter.operators import Operator, OperatorKind, parse_login, parse_networks, parse_rights
from msgcenter.store import operators as operator_store
from msgcenter.store.database import Database

#: secrets a technical account holds at once: the newest, and the one it replaces
SECRETS_KEPT = 2
#: a technical account cannot log on with a password: no password verifies against this
NO_PASSWORD = "!technical account: OAuth client credentials only"


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What a technical account authenticates with; the secret is shown this once."""

    login: str
    client_id: str
    client_secret: str


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

    def add_technical(
        self,
        login: str,
        rights: str,
        *,
        trusted: Iterable[str] = (),
        folder: str | None = None,
    ) -> ClientCredentials:
        """Create a technical account; its client id and first secret are returned."""
        checked = parse_login(login)
        granted, networks = parse_rights(rights), parse_networks(list(trusted))
        client_id = secrets.token_hex(16)
        secret = _new_secret()
        secret_hash = hash_password(secret)
        now = datetime.now(UTC)
        with self._db.write() as conn:
            created = operator_store.add(
                conn, checked, NO_PASSWORD, granted, networks, folder, now, client_id=client_id
            )
            operator_store.add_secret(conn, created.id, secret_hash, now, keep=SECRETS_KEPT)
        return ClientCredentials(created.login, client_id, secret)

    def rotate_secret(self, login: str) -> ClientCredentials:
        """Draw a new secret for a technical account; the previous one keeps working until the
        next rotation, so that integrations move over without downtime."""
        secret = _new_secret()
        secret_hash = hash_password(secret)
        with self._db.write() as conn:
            found = self._technical(conn, login)
            operator_store.add_secret(
                conn, found.id, secret_hash, datetime.now(UTC), keep=SECRETS_KEPT
            )
        assert found.client_id is not None
        return ClientCredentials(found.login, found.client_id, secret)

    def revoke(self, login: str) -> None:
        """Revoke a technical account: no new access token (those issued expire on their own)."""
        with self._db.write() as conn:
            self._technical(conn, login)
            operator_store.revoke(conn, login, datetime.now(UTC))

    def _technical(self, conn: Connection, login: str) -> Operator:
        found = operator_store.get(conn, login)
        if found.kind is not OperatorKind.TECHNICAL:
            raise ConflictError(
                f"operator '{login}' is not a technical account",
                detail=f"'{login}' logs on with a password; technical accounts are made with "
                "`msgcenter operator add-technical`",
            )
        if found.revoked is not None:
            raise ConflictError(f"technical account '{login}' is revoked")
        return found

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


def _new_secret() -> str:
    return secrets.token_urlsafe(32)
