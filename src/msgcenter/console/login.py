"""Logging in and out of the console, on both instances: the same operators and passwords as the
API, a session cookie, and ``/`` leading to the console."""

from __future__ import annotations

import asyncio
import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from msgcenter.console.route import ConsoleRoute
from msgcenter.console.web import (
    SECURITY_HEADERS,
    User,
    redirect,
    render,
    sessions_of,
)
from msgcenter.errors import AuthenticationError, PermissionDeniedError
from msgcenter.web.access import authenticator_of, client_of

HOME = "/console/"

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)


@router.get("/")
async def root() -> Response:
    return RedirectResponse(HOME, headers=SECURITY_HEADERS)


@router.get("/console/login")
async def login_page(request: Request, next: str = HOME) -> Response:  # noqa: A002
    nonce = secrets.token_urlsafe(24)
    response = render(request, "login.html", next=_local(next), nonce=nonce)
    # a random value the login form repeats: a page of another site cannot log a browser in
    # under the attacker's account (login CSRF)
    _set_cookie(request, response, sessions_of(request).login_cookie, nonce, max_age=3600)
    return response


@router.post("/console/login")
async def login(
    request: Request,
    login: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    nonce: Annotated[str, Form(max_length=64)] = "",
    next: Annotated[str, Form(max_length=2048)] = HOME,  # noqa: A002
) -> Response:
    sessions = sessions_of(request)
    expected = request.cookies.get(sessions.login_cookie, "")
    if not expected or not hmac.compare_digest(expected, nonce):
        return render(
            request,
            "login.html",
            400,
            next=_local(next),
            nonce=expected,
            error="the login form expired: try again",
        )
    auth = authenticator_of(request)
    try:
        token, _operator, _expires = await asyncio.to_thread(
            auth.logon, login, password, client_of(request)
        )
    except (AuthenticationError, PermissionDeniedError) as exc:
        # one message whatever was wrong: the page does not tell which logins exist
        status = 429 if getattr(exc, "retry_after", None) else 401
        message = exc.detail if status == 429 else "wrong login or password"
        if isinstance(exc, PermissionDeniedError):
            message, status = exc.detail, 403
        return render(
            request, "login.html", status, next=_local(next), nonce=expected, error=message
        )
    response = redirect(_local(next))
    _set_cookie(request, response, sessions.session_cookie, sessions.cookie_value(token))
    response.delete_cookie(sessions.login_cookie, path="/")
    return response


@router.post("/console/logout")
async def logout(request: Request, user: User) -> Response:
    await asyncio.to_thread(authenticator_of(request).logoff, user.token)
    response = redirect("/console/login", flash="logged out")
    response.delete_cookie(sessions_of(request).session_cookie, path="/")
    return response


def _local(target: str) -> str:
    """``target`` when it is a path of this site, else the console's home (no open redirect)."""
    if target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return HOME


def _set_cookie(
    request: Request, response: Response, name: str, value: str, *, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
