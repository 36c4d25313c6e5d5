"""Operators: who may call the APIs, with which rights, from where, in which folder."""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime

from msgcenter.errors import InvalidInputError, PermissionDeniedError

LOGIN = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


class Right(enum.StrEnum):
    """What an operator may do."""

    #: push events (SOAP PushEvent(s), REST POST /events)
    MC_PUSH = "mc_push"
    #: publications, archiving pulls, workflows, reading every event of its folder
    MC_ADMIN = "mc_admin"


class OperatorKind(enum.StrEnum):
    """How an operator authenticates."""

    #: a login and a password (HTTP Basic, SOAP Logon or ``login/password``)
    PERSON = "person"
    #: an OAuth client id and secret, exchanged for short-lived access tokens (SPEC §3.9)
    TECHNICAL = "technical"


@dataclass(frozen=True, slots=True)
class Operator:
    """An API account. ``trusted_networks`` empty means any address."""

    id: int
    login: str
    rights: frozenset[Right]
    trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    folder: str | None = None
    correlation_idempotency: bool = False
    kind: OperatorKind = OperatorKind.PERSON
    #: a technical account's OAuth client id
    client_id: str | None = None
    #: when a technical account last obtained an access token, and when it was revoked
    last_used: datetime | None = None
    revoked: datetime | None = None

    def require(self, right: Right) -> None:
        """Raise :class:`PermissionDeniedError` unless the operator holds ``right``."""
        if right not in self.rights:
            raise PermissionDeniedError(f"operator '{self.login}' lacks the {right} right")

    def trusts(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether calls from ``address`` are allowed for this operator."""
        return not self.trusted_networks or any(address in n for n in self.trusted_networks)


def parse_login(login: str) -> str:
    """Check a login's syntax (it must not contain "/", which separates the token forms)."""
    if not LOGIN.fullmatch(login):
        raise InvalidInputError(
            f"invalid login {login!r}", detail="a login is 1-64 letters, digits, _ . @ or -"
        )
    return login


def parse_rights(text: str) -> frozenset[Right]:
    """Rights from a comma-separated list such as ``mc_push,mc_admin``."""
    rights = set()
    for name in filter(None, (part.strip() for part in text.split(","))):
        try:
            rights.add(Right(name))
        except ValueError:
            known = ", ".join(r.value for r in Right)
            raise InvalidInputError(
                f"unknown right {name!r}", detail=f"known rights: {known}"
            ) from None
    return frozenset(rights)


def parse_networks(
    masks: list[str] | str,
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """IP masks from CIDR strings (a list, or one comma-separated string)."""
    if isinstance(masks, str):
        masks = [m for m in (part.strip() for part in masks.split(",")) if m]
    try:
        return tuple(ipaddress.ip_network(m, strict=False) for m in masks)
    except ValueError as exc:
        raise InvalidInputError("invalid IP mask", detail=str(exc)) from None
