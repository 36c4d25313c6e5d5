"""Who calls an API route: the one parser of ``Authorization`` credentials, and the
``require(right)`` dependency that every protected router applies (SPEC §3.2, §3.9).

Operators authenticate with HTTP Basic (login and password) or a Bearer session
token. Both schemes are declared to OpenAPI, so that a generated client knows
how to authenticate; the parsing is msgcenter's own, so that every failure is a
problem+json answer that says what was wrong.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated, cast

from fastapi import Depends, Request, Security
from fastapi.openapi.models import HTTPBase, HTTPBearer
from fastapi.security.base import SecurityBase

from msgcenter.auth.authenticator import Authenticator, identify
from msgcenter.auth.zones import Client
from msgcenter.errors import AuthenticationError
from msgcenter.operators import Operator, Right

NO_CREDENTIALS = (
    "no credentials: send HTTP Basic (operator login and password) or a Bearer session token"
)


class DeclaredScheme(SecurityBase):
    """An authentication scheme shown in the OpenAPI document; the credentials themselves are
    read by :func:`operator_of`, so that errors keep msgcenter's form."""

    def __init__(self, model: HTTPBase, scheme_name: str) -> None:
        self.model = model
        self.scheme_name = scheme_name

    async def __call__(self) -> None:
        return None


BASIC = DeclaredScheme(
    HTTPBase(scheme="basic", description="an operator's login and password"), "basic"
)
BEARER = DeclaredScheme(
    HTTPBearer(description="a session token from POST /api/v1/sessions or SOAP Logon"),
    "bearer",
)


def client_of(request: Request) -> Client:
    """The calling client as the security zones see it."""
    return Client.parse(
        request.client.host if request.client else None, https=request.url.scheme == "https"
    )


def authenticator_of(request: Request) -> Authenticator:
    """The authenticator of the application serving ``request``."""
    return cast(Authenticator, request.app.state.authenticator)


async def operator_of(auth: Authenticator, request: Request) -> Operator:
    """The operator behind the request's ``Authorization`` header (HTTP Basic or Bearer)."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    client = client_of(request)
    if scheme.lower() == "basic":
        try:
            login, _, password = (
                base64.b64decode(credentials, validate=True).decode().partition(":")
            )
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text
            raise AuthenticationError("malformed HTTP Basic credentials") from None
        return await identify(partial(auth.password, login, password, client))
    if scheme.lower() == "bearer" and credentials:
        return await identify(partial(auth.bearer, credentials.strip(), client))
    raise AuthenticationError(NO_CREDENTIALS)


@functools.cache
def require(right: Right | None = None) -> Callable[..., Awaitable[Operator]]:
    """The dependency that authenticates the caller and checks ``right`` (None: any operator).

    One callable per right, so that a router's dependency and a route's ``Operator``
    parameter are the same dependency, resolved once per request.
    """

    async def caller(
        request: Request,
        _basic: Annotated[None, Security(BASIC)],
        _bearer: Annotated[None, Security(BEARER)],
    ) -> Operator:
        operator = await operator_of(authenticator_of(request), request)
        if right is not None:
            operator.require(right)
        return operator

    return caller


#: a route parameter: any authenticated operator
Caller = Annotated[Operator, Depends(require())]
#: a route parameter: an operator with ``mc_admin``
Admin = Annotated[Operator, Depends(require(Right.MC_ADMIN))]
#: a route parameter: an operator with ``mc_push``
Pusher = Annotated[Operator, Depends(require(Right.MC_PUSH))]
