"""Named queries on operators and their sessions."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy.exc
from sqlalchemy import Connection, RowMapping, delete, insert, select, update

from msgcenter.errors import ConflictError, NotFoundError
from msgcenter.operators import Operator, OperatorKind, parse_networks, parse_rights
from msgcenter.store.tables import client_secret, operator, operator_session


def _from_row(row: RowMapping) -> Operator:
    return Operator(
        id=row["id"],
        login=row["login"],
        rights=parse_rights(row["rights"]),
        trusted_networks=parse_networks(row["trusted_networks"]),
        folder=row["folder"],
        correlation_idempotency=bool(row["correlation_idempotency"]),
        kind=OperatorKind(row["kind"]),
        client_id=row["client_id"],
        last_used=row["last_used"],
        revoked=row["revoked"],
    )


def add(
    conn: Connection,
    login: str,
    password_hash: str,
    rights: frozenset[str],
    trusted_networks: tuple[object, ...],
    folder: str | None,
    now: datetime,
    *,
    correlation_idempotency: bool = False,
    client_id: str | None = None,
) -> Operator:
    """Create an operator (a technical account when ``client_id`` is given); :class:`ConflictError`
    if the login is taken."""
    values = {
        "login": login,
        "password_hash": password_hash,
        "rights": ",".join(sorted(rights)),
        "trusted_networks": ",".join(str(n) for n in trusted_networks),
        "folder": folder,
        "correlation_idempotency": correlation_idempotency,
        "created": now,
        "updated": now,
        "kind": (OperatorKind.TECHNICAL if client_id else OperatorKind.PERSON).value,
        "client_id": client_id,
    }
    try:
        with conn.begin_nested():
            new_id = conn.execute(insert(operator).returning(operator.c.id), values).scalar_one()
    except sqlalchemy.exc.IntegrityError as exc:
        raise ConflictError(f"operator '{login}' already exists") from exc
    row = conn.execute(select(operator).where(operator.c.id == new_id)).mappings().one()
    return _from_row(row)


def get_with_hash(conn: Connection, login: str) -> tuple[Operator, str] | None:
    """The operator named ``login`` and its password hash, or None."""
    row = conn.execute(select(operator).where(operator.c.login == login)).mappings().first()
    return None if row is None else (_from_row(row), row["password_hash"])


def list_all(conn: Connection) -> list[Operator]:
    """Every operator, by login."""
    rows = conn.execute(select(operator).order_by(operator.c.login)).mappings()
    return [_from_row(row) for row in rows]


def set_password(conn: Connection, login: str, password_hash: str, now: datetime) -> None:
    """Replace an operator's password hash and end its sessions."""
    result = conn.execute(
        update(operator)
        .where(operator.c.login == login)
        .values(password_hash=password_hash, updated=now)
        .returning(operator.c.id)
    )
    operator_id = result.scalar_one_or_none()
    if operator_id is None:
        raise NotFoundError(f"no operator '{login}'")
    conn.execute(delete(operator_session).where(operator_session.c.operator_id == operator_id))


def remove(conn: Connection, login: str) -> None:
    """Delete an operator and its sessions."""
    operator_id = conn.execute(
        delete(operator).where(operator.c.login == login).returning(operator.c.id)
    ).scalar_one_or_none()
    if operator_id is None:
        raise NotFoundError(f"no operator '{login}'")
    conn.execute(delete(operator_session).where(operator_session.c.operator_id == operator_id))
    conn.execute(delete(client_secret).where(client_secret.c.operator_id == operator_id))


def open_session(
    conn: Connection, token_hash: str, operator_id: int, now: datetime, expires: datetime
) -> None:
    """Record a session (by the hash of its token)."""
    conn.execute(
        insert(operator_session).values(
            token_hash=token_hash, operator_id=operator_id, created=now, expires=expires
        )
    )


def session_operator(conn: Connection, token_hash: str) -> tuple[Operator, datetime] | None:
    """The operator of a session and the session's expiry, or None if there is no such session."""
    row = (
        conn.execute(
            select(operator, operator_session.c.expires)
            .join(operator_session, operator_session.c.operator_id == operator.c.id)
            .where(operator_session.c.token_hash == token_hash)
        )
        .mappings()
        .first()
    )
    return None if row is None else (_from_row(row), row["expires"])


def close_session(conn: Connection, token_hash: str) -> bool:
    """End a session; False if it did not exist."""
    result = conn.execute(
        delete(operator_session).where(operator_session.c.token_hash == token_hash)
    )
    return result.rowcount > 0


def add_secret(
    conn: Connection, operator_id: int, secret_hash: str, now: datetime, *, keep: int
) -> None:
    """Give a technical account a new client secret, keeping ``keep`` secrets in all (the
    newest); the older ones stop working."""
    conn.execute(
        insert(client_secret).values(operator_id=operator_id, secret_hash=secret_hash, created=now)
    )
    kept = select(client_secret.c.id).where(client_secret.c.operator_id == operator_id)
    kept = kept.order_by(client_secret.c.id.desc()).limit(keep)
    conn.execute(
        delete(client_secret).where(
            client_secret.c.operator_id == operator_id,
            client_secret.c.id.not_in([row[0] for row in conn.execute(kept)]),
        )
    )


def get_client(conn: Connection, client_id: str) -> tuple[Operator, list[str]] | None:
    """The technical account of ``client_id`` and its secrets' hashes (newest first), or None."""
    row = conn.execute(select(operator).where(operator.c.client_id == client_id)).mappings().first()
    if row is None:
        return None
    hashes = conn.execute(
        select(client_secret.c.secret_hash)
        .where(client_secret.c.operator_id == row["id"])
        .order_by(client_secret.c.id.desc())
    ).scalars()
    return _from_row(row), list(hashes)


def get(conn: Connection, login: str) -> Operator:
    """The operator named ``login``; :class:`NotFoundError` if there is none."""
    row = conn.execute(select(operator).where(operator.c.login == login)).mappings().first()
    if row is None:
        raise NotFoundError(f"no operator '{login}'")
    return _from_row(row)


def mark_used(conn: Connection, operator_id: int, now: datetime) -> None:
    """Record that a technical account obtained an access token."""
    conn.execute(update(operator).where(operator.c.id == operator_id).values(last_used=now))


def revoke(conn: Connection, login: str, now: datetime) -> None:
    """Revoke a technical account: its secrets stop working (the account stays listed)."""
    operator_id = conn.execute(
        update(operator)
        .where(operator.c.login == login)
        .values(revoked=now, updated=now)
        .returning(operator.c.id)
    ).scalar_one_or_none()
    if operator_id is None:
        raise NotFoundError(f"no operator '{login}'")
    conn.execute(delete(client_secret).where(client_secret.c.operator_id == operator_id))


def purge_expired_sessions(conn: Connection, now: datetime) -> int:
    """Delete expired sessions; returns how many."""
    return conn.execute(delete(operator_session).where(operator_session.c.expires <= now)).rowcount
