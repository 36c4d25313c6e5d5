"""OAuth 2.0 access tokens of technical accounts: issued for a client id and secret (RFC 6749
§4.4), written as JWTs in the RFC 9068 profile, signed with PyJWT.

A token carries what a request needs to know of its operator (id, login, rights as the
``scope``, folder, trusted masks), so that verifying it reads no database: a revoked
account's tokens keep working until they expire (``security.access_token_seconds``, five
minutes by default). Keys are shared secrets (HS256): the instance that issues a token is the
one that checks it. The first key of ``security.access_token_keys`` signs; every key verifies,
so that a new key can be put first while tokens signed with the previous one expire.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from msgcenter.errors import AuthenticationError, ConfigurationError, InvalidInputError
from msgcenter.operators import Operator, OperatorKind, Right, parse_networks, parse_rights
from msgcenter.settings import Settings

ALGORITHM = "HS256"
#: RFC 9068 §2.1: the ``typ`` header of a JWT access token
TOKEN_TYPE = "at+jwt"
#: the claim holding what a request needs to know of the operator
OPERATOR_CLAIM = "msgcenter"
#: a key's id (``kid``) of the one derived from ``secret_key``
DERIVED_KID = "secret-key"
MIN_KEY_CHARS = 32


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """An access token, its lifetime in seconds and the rights it grants."""

    token: str
    expires_in: int
    scope: frozenset[Right]


class AccessTokens:
    """Issues and verifies the access tokens of one instance."""

    def __init__(self, keys: list[tuple[str, bytes]], issuer: str, lifetime_seconds: int) -> None:
        if not keys:
            raise ConfigurationError("no key signs access tokens")
        self._keys = keys
        self._by_kid = dict(keys)
        self._issuer = issuer
        self._lifetime = lifetime_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessTokens | None:
        """The access tokens of an instance, as its settings configure them."""
        return cls.from_config(
            [key.get_secret_value() for key in settings.security.access_token_keys],
            settings.secret_key.get_secret_value(),
            settings.token_issuer(),
            settings.security.access_token_seconds,
        )

    @classmethod
    def from_config(
        cls, configured: list[str], secret_key: str, issuer: str, lifetime_seconds: int
    ) -> AccessTokens | None:
        """The tokens of ``security.access_token_keys`` (``kid:secret``), or of one key derived
        from ``secret_key``; None when neither is set (no token can be trusted then)."""
        keys = []
        for entry in configured:
            kid, _, secret = entry.partition(":")
            if not kid or len(secret) < MIN_KEY_CHARS:
                raise ConfigurationError(
                    "security.access_token_keys holds an unusable key",
                    detail=f"each key is 'kid:secret' with a secret of at least {MIN_KEY_CHARS} "
                    "characters",
                )
            keys.append((kid, secret.encode()))
        if not keys and secret_key:
            derived = hashlib.sha256(b"msgcenter access tokens\0" + secret_key.encode()).digest()
            keys.append((DERIVED_KID, derived))
        return cls(keys, issuer, lifetime_seconds) if keys else None

    def issue(self, operator: Operator, scope: frozenset[Right], now: datetime) -> IssuedToken:
        """A token for technical account ``operator`` granting ``scope`` (a subset of its
        rights)."""
        kid, key = self._keys[0]
        claims = {
            "iss": self._issuer,
            "aud": self._issuer,
            "sub": operator.client_id,
            "client_id": operator.client_id,
            "iat": now,
            "exp": now + timedelta(seconds=self._lifetime),
            "jti": secrets.token_hex(16),
            "scope": " ".join(sorted(scope)),
            OPERATOR_CLAIM: {
                "id": operator.id,
                "login": operator.login,
                "folder": operator.folder,
                "trusted": [str(n) for n in operator.trusted_networks],
                "correlation_idempotency": operator.correlation_idempotency,
            },
        }
        token = jwt.encode(
            claims, key, algorithm=ALGORITHM, headers={"kid": kid, "typ": TOKEN_TYPE}
        )
        return IssuedToken(token, self._lifetime, scope)

    def verify(self, token: str) -> tuple[Operator, datetime]:
        """The operator a valid token stands for, and when it expires; else
        :class:`AuthenticationError` saying what is wrong with it."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthenticationError("malformed access token") from None
        if header.get("typ", "").lower() not in (TOKEN_TYPE, "application/at+jwt"):
            raise AuthenticationError("not an access token (its typ is not at+jwt)")
        key = self._by_kid.get(str(header.get("kid")))
        if key is None:
            raise AuthenticationError(
                f"access token signed with an unknown key '{header.get('kid')}'"
            )
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._issuer,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "client_id"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError(
                "access token expired: ask the token endpoint for another"
            ) from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError("access token signature does not verify") from None
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError(f"invalid access token: {exc}") from None
        return _operator(claims), datetime.fromtimestamp(claims["exp"], UTC)


def looks_like_access_token(token: str) -> bool:
    """Whether ``token`` has a JWT's shape (session tokens and ``login/password`` do not)."""
    return token.count(".") == 2 and token.startswith("eyJ")


def _operator(claims: dict[str, Any]) -> Operator:
    try:
        about = claims[OPERATOR_CLAIM]
        return Operator(
            id=int(about["id"]),
            login=str(about["login"]),
            rights=parse_rights(",".join(str(claims.get("scope", "")).split())),
            trusted_networks=parse_networks([str(n) for n in about.get("trusted", [])]),
            folder=about.get("folder"),
            correlation_idempotency=bool(about.get("correlation_idempotency")),
            kind=OperatorKind.TECHNICAL,
            client_id=str(claims["client_id"]),
        )
    except (KeyError, TypeError, ValueError, InvalidInputError):
        raise AuthenticationError("access token without the operator msgcenter needs") from None
