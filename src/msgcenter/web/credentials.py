"""Who sent an HTTP request: HTTP Basic or a Bearer session token, checked by the authenticator."""

from __future__ import annotations

import base64
import binascii
from functools import partial

from starlette.requests import Request

from msgcenter.auth.authenticator import Authenticator, identify
from msgcenter.auth.zones import Client
from msgcenter.errors import AuthenticationError
from msgcenter.operators import Operator


def client_of(request: Request) -> Client:
    """The calling client as the security zones see it."""
    return Client.parse(
        request.client.host if request.client else None, https=request.url.scheme == "https"
    )


async def operator_of(auth: Authenticator, request: Request) -> Operator:
    """The operator behind the request's ``Authorization`` header."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    client = client_of(request)
    if scheme.lower() == "basic":
        try:
            login, _, password = (
                base64.b64decode(credentials, validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationError("malformed HTTP Basic credentials") from None
        return await identify(partial(auth.password, login, password, client))
    if scheme.lower() == "bearer" and credentials:
        return await identify(partial(auth.bearer, credentials.strip(), client))
    raise AuthenticationError(
        "no credentials: send HTTP Basic (operator login and password) or a Bearer session token"
    )
