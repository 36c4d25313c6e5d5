"""The OAuth 2.0 token endpoint of both instances: client credentials (RFC 6749 §4.4) of
technical accounts exchanged for access tokens (see :mod:`msgcenter.auth.tokens`).

``POST /oauth2/token`` takes a form-encoded body: ``grant_type=client_credentials``, the
client's id and secret (in the body, or as HTTP Basic, never both: RFC 6749 §2.3.1), and an
optional ``scope`` (rights, space-separated). Errors are RFC 6749 §5.2 JSON bodies.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from msgcenter.auth.tokens import IssuedToken
from msgcenter.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidInputError,
    MsgcenterError,
    PermissionDeniedError,
    TooManyFailedLoginsError,
)
from msgcenter.intake.body import read_body
from msgcenter.operators import Right, parse_rights
from msgcenter.web.access import authenticator_of, client_of

#: a token request is a few hundred bytes
MAX_BODY = 8 * 1024
FORM = "application/x-www-form-urlencoded"
#: RFC 6749 §5.1: a token answer is never cached
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

router = APIRouter(tags=["oauth"])


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer."""

    def __init__(self, error: str, description: str, status: int = 400, **headers: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers


@router.post(
    "/oauth2/token",
    summary="An access token for a technical account's client credentials (RFC 6749 §4.4)",
    responses={
        200: {"description": "access_token, token_type, expires_in, scope"},
        400: {
            "description": "RFC 6749 §5.2 error: invalid_request, unsupported_grant_type, "
            "invalid_scope"
        },
        401: {"description": "invalid_client"},
        429: {"description": "too many failed client authentications"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                FORM: {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type"],
                        "properties": {
                            "grant_type": {"type": "string", "enum": ["client_credentials"]},
                            "client_id": {"type": "string"},
                            "client_secret": {"type": "string", "format": "password"},
                            "scope": {"type": "string", "description": "mc_push mc_admin"},
                        },
                    }
                }
            },
        }
    },
)
async def token(request: Request) -> Response:
    try:
        issued = await _issue(request)
    except OAuthError as exc:
        body = {"error": exc.error, "error_description": exc.description}
        return _json(body, exc.status, {**NO_STORE, **exc.headers})
    answer = {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": " ".join(sorted(issued.scope)),
    }
    return _json(answer, 200, NO_STORE)


async def _issue(request: Request) -> IssuedToken:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM:
        raise OAuthError("invalid_request", f"the body must be {FORM}")
    try:
        body = await read_body(request, MAX_BODY)
    except MsgcenterError as exc:
        raise OAuthError("invalid_request", exc.detail) from None
    form = _form(body)
    if form.get("grant_type") != "client_credentials":
        raise OAuthError(
            "unsupported_grant_type",
            f"grant_type {form.get('grant_type')!r}: only client_credentials is supported",
        )
    client_id, secret, basic = _client(request, form)
    scope = _scope(form.get("scope"))
    try:
        return await asyncio.to_thread(
            authenticator_of(request).issue_token, client_id, secret, scope, client_of(request)
        )
    except TooManyFailedLoginsError as exc:
        raise OAuthError(
            "invalid_client", exc.detail, 429, **{"Retry-After": str(exc.retry_after)}
        ) from None
    except AuthenticationError as exc:
        challenge = {"WWW-Authenticate": 'Basic realm="msgcenter"'} if basic else {}
        raise OAuthError("invalid_client", exc.detail, 401, **challenge) from None
    except PermissionDeniedError as exc:
        raise OAuthError("invalid_scope" if scope else "unauthorized_client", exc.detail) from None
    except ConfigurationError as exc:
        raise OAuthError("server_error", exc.detail, 500) from None


def _form(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the body is not a form") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:  # RFC 6749 §3.2
            raise OAuthError("invalid_request", f"parameter {name!r} is given more than once")
        form[name] = value
    return form


def _client(request: Request, form: dict[str, str]) -> tuple[str, str, bool]:
    """The client id and secret, from HTTP Basic or the body (RFC 6749 §2.3.1), and whether
    Basic was used."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        if "client_secret" in form:
            raise OAuthError(
                "invalid_request",
                "the client authenticated twice: HTTP Basic and client_secret in the body",
            )
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text
            raise OAuthError("invalid_request", "malformed HTTP Basic credentials") from None
        client_id, _, secret = (unquote_plus(part) for part in decoded.partition(":"))
        if form.get("client_id") not in (None, client_id):
            raise OAuthError("invalid_request", "client_id differs from the HTTP Basic user")
        return client_id, secret, True
    if not form.get("client_id") or "client_secret" not in form:
        raise OAuthError(
            "invalid_client",
            "no client credentials: send client_id and client_secret, or HTTP Basic",
            401,
        )
    return form["client_id"], form["client_secret"], False


def _scope(text: str | None) -> frozenset[Right] | None:
    if text is None or not text.strip():
        return None
    try:
        return parse_rights(",".join(text.split()))
    except InvalidInputError as exc:
        raise OAuthError("invalid_scope", exc.detail) from None


def _json(body: dict[str, Any], status: int, headers: dict[str, str]) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")
