"""What every console page shares: the templates, the logged-in operator and its session
cookie, the CSRF token, and the security headers.

A person logs in with an operator's login and password (the same Argon2-checked
operators and rights as the API). The session is an operator session of the
database, whose token travels in a signed cookie that is ``HttpOnly``,
``SameSite=Strict`` and ``Secure`` over TLS; the signature carries the time of the
last request, so that a console left idle for ``security.console_idle_seconds``
asks for the password again. Every state-changing request carries a CSRF token
derived from the session (a form field, or the ``X-CSRF-Token`` header that htmx
sends), and every page forbids inline scripts (Content-Security-Policy).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import quote, unquote

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import RedirectResponse, Response

from msgcenter.auth.authenticator import Authenticator, identify
from msgcenter.errors import AuthenticationError, MsgcenterError, PermissionDeniedError
from msgcenter.operators import Operator, Right
from msgcenter.web.access import authenticator_of, client_of

#: the cookies of a console are named after its instance (see :class:`ConsoleSessions`)
COOKIE_PREFIX = "msgcenter"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
#: no inline script anywhere; styles may be inline (e-mail HTML in the preview needs them);
#: images of a previewed e-mail may come from its https hosts
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https:; frame-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """The request needs a logged-in operator (none, or the session ended or idled out)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ConsoleSessions:
    """Signs the session cookie and derives the CSRF token of a session.

    Browsers keep cookies per host, not per port: the consoles of instances on one host
    (``msgcenter up`` serves two on loopback) name their cookies after their instance, so
    that logging in to one does not log out of the other.
    """

    secret: str
    idle_seconds: int
    #: the instance's role and name (``instance_name``), in the cookies' names
    instance: str = "console"

    @property
    def session_cookie(self) -> str:
        """The cookie holding the signed session token."""
        return f"{COOKIE_PREFIX}_{self._suffix}"

    @property
    def login_cookie(self) -> str:
        """The cookie holding the login form's nonce (no login CSRF)."""
        return f"{COOKIE_PREFIX}_{self._suffix}_login"

    @property
    def flash_cookie(self) -> str:
        """The message of the last change, shown once by the page the change redirects to (a
        cookie the server set, never a query string a link of another site could fill)."""
        return f"{COOKIE_PREFIX}_{self._suffix}_flash"

    @property
    def _suffix(self) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", self.instance)[:40]

    def cookie_value(self, token: str) -> str:
        """The cookie holding ``token``, stamped now."""
        return self._signer().sign(token).decode()

    def token_of(self, cookie: str) -> str:
        """The session token in ``cookie``; :class:`LoginRequired` if it is forged or idled out."""
        try:
            return self._signer().unsign(cookie, max_age=self.idle_seconds).decode()
        except SignatureExpired:
            raise LoginRequired("your session was idle too long: log in again") from None
        except BadSignature:
            raise LoginRequired() from None

    def csrf_for(self, token: str) -> str:
        """The CSRF token of the session ``token``."""
        key = hashlib.sha256(b"msgcenter console csrf\0" + self.secret.encode()).digest()
        return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()[:40]

    def _signer(self) -> TimestampSigner:
        return TimestampSigner(self.secret, salt="msgcenter-console-session")


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """The logged-in operator of a console request."""

    operator: Operator
    token: str
    csrf: str

    @property
    def admin(self) -> bool:
        return Right.MC_ADMIN in self.operator.rights


def sessions_of(request: Request) -> ConsoleSessions:
    return cast(ConsoleSessions, request.app.state.console_sessions)


async def console_user(request: Request) -> ConsoleUser:
    """The dependency of every console page: the logged-in operator (else the login page)."""
    sessions = sessions_of(request)
    cookie = request.cookies.get(sessions.session_cookie)
    if not cookie:
        raise LoginRequired()
    token = sessions.token_of(cookie)
    auth: Authenticator = authenticator_of(request)
    try:
        operator = await identify(partial(auth.bearer, token, client_of(request)))
    except AuthenticationError:
        raise LoginRequired("your session ended: log in again") from None
    user = ConsoleUser(operator, token, sessions.csrf_for(token))
    request.state.console_user = user
    if request.method not in ("GET", "HEAD"):
        await _check_csrf(request, user)
    return user


async def console_admin(user: Annotated[ConsoleUser, Depends(console_user)]) -> ConsoleUser:
    """A logged-in operator holding ``mc_admin``."""
    if not user.admin:
        raise PermissionDeniedError(f"operator '{user.operator.login}' lacks the mc_admin right")
    return user


User = Annotated[ConsoleUser, Depends(console_user)]
Admin = Annotated[ConsoleUser, Depends(console_admin)]


async def _check_csrf(request: Request, user: ConsoleUser) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if not sent or not hmac.compare_digest(sent, user.csrf):
        raise PermissionDeniedError(
            "the form has no valid CSRF token: reload the page and try again"
        )


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("msgcenter.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = _when
    environment.filters["seconds"] = _seconds
    environment.filters["indicator"] = _indicator
    return environment


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "never"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def _indicator(value: float | None, name: str) -> str:
    """A report figure as people read it: a rate in percent, a time in seconds."""
    if value is None:
        return "-"
    if name == "error_rate":
        return f"{value * 100:.1f} %"
    if name.endswith("seconds"):
        return f"{value:.3f} s"
    return f"{value:g}"


TEMPLATES = Jinja2Templates(env=_environment())
STATIC_DIR = Path(__file__).parent / "static"


def render(request: Request, page: str, status_code: int = 200, /, **context: Any) -> Response:
    """A console page (or an htmx fragment) with the security headers; the template sees the
    logged-in ``user`` (when there is one), its ``csrf`` token and which ``role`` serves it."""
    user = getattr(request.state, "console_user", None)
    context.setdefault("user", user)
    context.setdefault("csrf", user.csrf if user else "")
    context.setdefault("role", request.app.state.console_role)
    flash_cookie = sessions_of(request).flash_cookie
    flash = request.cookies.get(flash_cookie)
    context.setdefault("flash", unquote(flash) if flash else None)
    response = TEMPLATES.TemplateResponse(request, page, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    if flash:
        response.delete_cookie(flash_cookie, path="/", httponly=True, samesite="strict")
    return response


class ConsoleRedirect(RedirectResponse):
    """Where to go after a change (303, so that a reload does not post again; for an htmx
    request, a 204 telling htmx to go there), with the message the next page flashes."""

    def __init__(self, url: str, flash: str | None, *, htmx: bool) -> None:
        super().__init__(url, status_code=303, headers=SECURITY_HEADERS)
        if htmx:
            self.status_code = 204
            del self.headers["location"]
            self.headers["HX-Redirect"] = url
        self.flash = flash[:500] if flash else None

    def keep_flash(self, request: Request) -> None:
        """Put the message in the flash cookie of the console ``request`` reached."""
        if self.flash:
            self.set_cookie(
                sessions_of(request).flash_cookie,
                quote(self.flash),
                max_age=60,
                path="/",
                httponly=True,
                samesite="strict",
            )


def redirect(url: str, *, flash: str | None = None, htmx: bool = False) -> ConsoleRedirect:
    """Go to ``url`` after a change, where ``flash`` is shown once (see :class:`ConsoleRedirect`)."""
    return ConsoleRedirect(url, flash, htmx=htmx)


def problem_text(exc: MsgcenterError) -> str:
    """One line for a page: what the service refused and why."""
    return exc.message if exc.detail == exc.message else f"{exc.message}: {exc.detail}"
