"""The route class of console pages: what a service refuses becomes a page, not problem+json;
a request without a live session goes to the login page."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from msgcenter.console.web import (
    ConsoleRedirect,
    LoginRequired,
    problem_text,
    redirect,
    render,
    sessions_of,
)
from msgcenter.errors import MsgcenterError
from msgcenter.web.problems import status_of

LOGIN = "/console/login"
HOME = "/console/"


class ConsoleRoute(APIRoute):
    """Turns :class:`LoginRequired` into the login page (an htmx request is told to go there)
    and a msgcenter error into an error page with its status and the service's reason."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired as exc:
                path = request.url.path
                target = LOGIN if path == HOME else f"{LOGIN}?next={quote(path)}"
                response = redirect(
                    target, flash=exc.reason or None, htmx="hx-request" in request.headers
                )
                response.keep_flash(request)
                return response
            except MsgcenterError as exc:
                template = (
                    "fragments/error.html" if "hx-request" in request.headers else "error.html"
                )
                return render(
                    request,
                    template,
                    status_of(exc),
                    error=problem_text(exc),
                    back=_same_site_referer(request),
                )
            _refresh_session(request, response)
            if isinstance(response, ConsoleRedirect):
                response.keep_flash(request)
            return response

        return handle


def _refresh_session(request: Request, response: Response) -> None:
    """Stamp the session cookie anew: the idle delay counts from this request."""
    user = getattr(request.state, "console_user", None)
    sessions = sessions_of(request)
    setting = response.headers.getlist("set-cookie")
    if user is None or any(c.startswith(f"{sessions.session_cookie}=") for c in setting):
        return
    response.set_cookie(
        sessions.session_cookie,
        sessions.cookie_value(user.token),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _same_site_referer(request: Request) -> str | None:
    """The page a refused request came from, when it is a page of this site."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc != request.url.netloc or not referer.path.startswith("/console"):
        return None
    return referer.path + (f"?{referer.query}" if referer.query else "")
