"""Who is calling: credentials and session tokens checked against operators and security zones.

Every API call authenticates, so the hot path must not hash a password or read
the database each time: verified credentials and sessions are cached in the
process for ``security.credential_cache_seconds`` (a changed password or an
ended session elsewhere takes effect within that delay; in this process at once).
When cached credentials expire, the operator is read again, but the password is
hashed again only if the operator's stored hash changed: the same password against
the same hash can only give the same answer, and each Argon2 check costs tens of
milliseconds and 19 MiB.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from msgcenter.auth.passwords import verify_password
from msgcenter.auth.throttle import FailedLogonThrottle, ThrottlePolicy
from msgcenter.auth.tokens import AccessTokens, IssuedToken, looks_like_access_token
from msgcenter.auth.zones import Client, SecurityZones
from msgcenter.errors import AuthenticationError, ConfigurationError, PermissionDeniedError
from msgcenter.operators import Operator, Right
from msgcenter.settings import SecuritySettings
from msgcenter.store import operators as operator_store
from msgcenter.store.database import Database

#: prefix of session tokens issued by Logon (tokens never contain "/", unlike ``login/password``)
TOKEN_PREFIX = "mcs_"


async def identify(check: Callable[..., Operator | None]) -> Operator:
    """Run an :class:`Authenticator` check from the event loop.

    ``check`` is a bound method with its arguments (a ``functools.partial``). It is
    first tried from the caches only; the slow path (database, Argon2) runs in a
    worker thread so that it never blocks the loop.
    """
    found = check(cache_only=True)
    if found is None:
        found = await asyncio.to_thread(check, cache_only=False)
    assert found is not None
    return found


def _drop_expired(cache: dict[Any, tuple[Any, ...]], now: float) -> None:
    """Drop the entries of ``cache`` (values: operator, cached until, …) expired at ``now``."""
    for key in [k for k, entry in cache.items() if entry[1] <= now]:
        del cache[key]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Authenticator:
    """Identifies operators from passwords and session tokens, enforcing zones and throttling."""

    def __init__(
        self,
        db: Database,
        settings: SecuritySettings,
        *,
        tokens: AccessTokens | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._settings = settings
        self._tokens = tokens
        self._zones = SecurityZones(settings)
        self._throttle = FailedLogonThrottle(
            ThrottlePolicy(
                login_limit=settings.failed_login_limit,
                address_limit=settings.failed_address_limit,
                window=settings.failed_login_window_seconds,
                max_delay=settings.failed_login_max_delay_seconds,
            ),
            clock,
        )
        self._clock = clock
        self._now = now
        self._ttl = settings.credential_cache_seconds
        self._lock = threading.Lock()
        # (login, digest of password) -> (operator, cached until, the stored hash it matched)
        self._verified: dict[tuple[str, str], tuple[Operator, float, str]] = {}
        # (login, digest of password) -> lock held while that pair is being checked
        self._verifying: dict[tuple[str, str], threading.Lock] = {}
        # digest of token -> (operator, cached until)
        self._sessions: dict[str, tuple[Operator, float]] = {}
        # when the expired entries of both caches were last dropped
        self._swept = clock()

    # -- entry points -------------------------------------------------------------------

    def password(
        self, login: str, password: str, client: Client, *, cache_only: bool = False
    ) -> Operator | None:
        """The operator for ``login``/``password`` (HTTP Basic, Logon).

        With ``cache_only``, answers None instead of doing the slow part (a database
        read and a password hash): see :func:`identify`.
        """
        self._check_transport(client)
        if password == "":
            zone = self._zones.zone_for(client.address)
            if not zone.allow_empty_password:
                raise PermissionDeniedError(
                    f"empty passwords are not allowed from {client.address} (security zone '{zone.name}')"
                )
        return self._verify(login, password, client, cache_only)

    def session_token(
        self, token: str, client: Client, *, cache_only: bool = False
    ) -> Operator | None:
        """The operator behind a SOAP ``sessiontoken``: a Logon token, ``login/password`` or ``login/``."""
        if not token:
            raise AuthenticationError("no session token: send a Logon token or login/password")
        if "/" not in token:
            return self.bearer(token, client, cache_only=cache_only)
        login, password = token.split("/", 1)
        zone = self._zones.zone_for(client.address)
        if password and not zone.allow_login_password_token:
            raise PermissionDeniedError(
                f"the login/password token form is not allowed from {client.address} "
                f"(security zone '{zone.name}'); call xtk:session#Logon and use its token"
            )
        return self.password(login, password, client, cache_only=cache_only)

    def bearer(self, token: str, client: Client, *, cache_only: bool = False) -> Operator | None:
        """The operator of a session token issued by :meth:`logon`, or of an access token
        issued by :meth:`issue_token` (checked without reading the database)."""
        self._check_transport(client)
        digest = _digest(token)
        cached = self._sessions.get(digest)
        if cached is not None and cached[1] > self._clock():
            operator = cached[0]
        elif looks_like_access_token(token):
            operator = self._verify_access_token(token, digest, client)
        elif cache_only:
            return None
        else:
            operator = self._load_session(token, digest, client)
        self._check_trusted(operator, client)
        return operator

    def issue_token(
        self, client_id: str, secret: str, scope: frozenset[Right] | None, client: Client
    ) -> IssuedToken:
        """An access token for the technical account ``client_id`` (RFC 6749 §4.4), granting
        ``scope`` (default: every right of the account). Raises
        :class:`AuthenticationError` for an unknown client, a wrong secret or a revoked
        account (the same for all three), throttled like logons."""
        if self._tokens is None:
            raise ConfigurationError(
                "access tokens are off",
                detail="set secret_key (or security.access_token_keys) to issue access tokens",
            )
        self._check_transport(client)
        self._throttle.check(client_id, client.address)
        with self._db.read() as conn:
            found = operator_store.get_client(conn, client_id)
        if (
            found is None
            or found[0].revoked is not None
            or not any(verify_password(h, secret) for h in found[1])
        ):
            self._throttle.failed(client_id, client.address)
            raise AuthenticationError("unknown client id, wrong secret or revoked account")
        operator = found[0]
        self._throttle.succeeded(client_id, client.address)
        self._check_trusted(operator, client)
        granted = operator.rights if scope is None else scope
        if not granted <= operator.rights:
            raise PermissionDeniedError(
                f"technical account '{operator.login}' holds "
                f"{', '.join(sorted(operator.rights)) or 'no right'}, not "
                f"{', '.join(sorted(granted - operator.rights))}"
            )
        now = self._now()
        with self._db.write() as conn:
            operator_store.mark_used(conn, operator.id, now)
        return self._tokens.issue(operator, granted, now)

    def logon(self, login: str, password: str, client: Client) -> tuple[str, Operator, datetime]:
        """Open a session: returns its token, the operator and the expiry."""
        operator = self.password(login, password, client)
        assert operator is not None
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._now()
        expires = now + timedelta(seconds=self._settings.session_ttl_seconds)
        with self._db.write() as conn:
            operator_store.purge_expired_sessions(conn, now)
            operator_store.open_session(conn, _digest(token), operator.id, now, expires)
        return token, operator, expires

    def logoff(self, token: str) -> None:
        """End a session; :class:`AuthenticationError` if there is none for ``token``."""
        digest = _digest(token)
        with self._lock:
            self._sessions.pop(digest, None)
        with self._db.write() as conn:
            if not operator_store.close_session(conn, digest):
                raise AuthenticationError("unknown or already ended session token")

    # -- internals ----------------------------------------------------------------------

    def _check_transport(self, client: Client) -> None:
        if client.https:
            return
        zone = self._zones.zone_for(client.address)
        if not zone.allow_http:
            raise PermissionDeniedError(
                f"plain HTTP is not allowed from {client.address} (security zone '{zone.name}'); use HTTPS"
            )

    def _verify(
        self, login: str, password: str, client: Client, cache_only: bool
    ) -> Operator | None:
        key = (login, _digest(password))
        cached = self._verified.get(key)
        if cached is not None and cached[1] > self._clock():
            self._check_trusted(cached[0], client)
            return cached[0]
        if cache_only:
            return None
        # One check per credentials at a time: concurrent first calls wait for it
        # instead of hashing the same password in parallel.
        with self._lock:
            key_lock = self._verifying.setdefault(key, threading.Lock())
        try:
            with key_lock:
                cached = self._verified.get(key)
                if cached is not None and cached[1] > self._clock():
                    self._check_trusted(cached[0], client)
                    return cached[0]
                return self._check_password(login, password, client, key)
        finally:
            with self._lock:
                self._verifying.pop(key, None)

    def _check_password(
        self, login: str, password: str, client: Client, key: tuple[str, str]
    ) -> Operator:
        self._throttle.check(login, client.address)
        with self._db.read() as conn:
            found = operator_store.get_with_hash(conn, login)
        expired = self._verified.get(key)
        matched_before = found is not None and expired is not None and expired[2] == found[1]
        # one answer for both, which never echoes the login: which logins exist stays unknown
        if found is None or not (matched_before or verify_password(found[1], password)):
            self._throttle.failed(login, client.address)
            raise AuthenticationError("unknown login or wrong password")
        operator, stored_hash = found
        self._throttle.succeeded(login, client.address)
        self._check_trusted(operator, client)
        with self._lock:
            self._sweep()
            self._verified[key] = (operator, self._clock() + self._ttl, stored_hash)
        return operator

    def _verify_access_token(self, token: str, digest: str, client: Client) -> Operator:
        if self._tokens is None:
            raise AuthenticationError("access tokens are not accepted by this instance")
        try:
            operator, expires = self._tokens.verify(token)
        except AuthenticationError as exc:
            self._token_failed(client, exc)
        until = min(self._ttl, (expires - self._now()).total_seconds())
        with self._lock:
            self._sweep()
            self._sessions[digest] = (operator, self._clock() + until)
        return operator

    def _load_session(self, token: str, digest: str, client: Client) -> Operator:
        with self._db.read() as conn:
            found = operator_store.session_operator(conn, digest)
        if found is None:
            self._token_failed(
                client,
                AuthenticationError("unknown session token (ended, or never issued)")
                if token.startswith(TOKEN_PREFIX)
                else AuthenticationError(
                    "malformed session token: expected a Logon token or login/password"
                ),
            )
        operator, expires = found
        now = self._now()
        if expires <= now:
            raise AuthenticationError(f"session token expired at {expires.isoformat()}")
        until = min(self._clock() + self._ttl, self._clock() + (expires - now).total_seconds())
        with self._lock:
            self._sweep()
            self._sessions[digest] = (operator, until)
        return operator

    def _token_failed(self, client: Client, error: AuthenticationError) -> NoReturn:
        """A token that is no valid one counts against its address (a valid token never
        does): ``error``, or a 429 once the address must wait."""
        self._throttle.check(None, client.address)
        self._throttle.failed(None, client.address)
        raise error

    def _sweep(self) -> None:
        """Drop expired entries of both caches, at most once per cache lifetime (under the
        lock): without it, every token ever seen would stay in memory."""
        now = self._clock()
        if now - self._swept < max(self._ttl, 1):
            return
        self._swept = now
        _drop_expired(self._verified, now)
        _drop_expired(self._sessions, now)

    def cached_entries(self) -> int:
        """How many verified credentials and sessions this process keeps."""
        with self._lock:
            return len(self._verified) + len(self._sessions)

    @staticmethod
    def _check_trusted(operator: Operator, client: Client) -> None:
        if not operator.trusts(client.address):
            raise PermissionDeniedError(
                f"address {client.address} is not in the trusted IP masks of operator '{operator.login}'"
            )
