"""The push side of the catcher: a local HTTP/2 server that plays APNs and FCM.

Nothing is delivered: each notification is checked as Apple and Google check it, then kept
in memory (the last ``max_notifications``, newest first) for a page to show. One server
(hypercorn, in a thread of its own) answers

- APNs: ``POST /3/device/<token>`` with a provider token (an ES256 JWT whose ``kid`` names an
  app's key, ``iss`` its team id) and the ``apns-topic``, ``apns-push-type``,
  ``apns-priority`` and ``apns-expiration`` headers; errors are Apple's (``{"reason": …}``);
- FCM: the OAuth 2.0 token endpoint ``POST /token`` (the JWT bearer grant of RFC 7523,
  an RS256 assertion with ``aud`` this endpoint and the Firebase messaging scope), and
  ``POST /v1/projects/<project>/messages:send`` with the access token it gave.

:meth:`CatcherApp.generate` makes throwaway credentials (an EC P-256 key for APNs, an RSA key
and a service account for FCM) and :meth:`PushCatcher.push_settings` the ``[push]`` settings
that point an execution instance at the catcher, so push can be tried without an Apple or a
Google account. :meth:`PushCatcher.fail` makes the next notifications to a device token fail
the way a real service would (a dead token, a 429), to see how msgcenter copes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import secrets
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h2.connection
import h2.errors
import h2.events
import hypercorn.protocol
import hypercorn.protocol.h2
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypercorn.asyncio import serve
from hypercorn.config import Config
from hyperframe.frame import GoAwayFrame
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["CatcherApp", "CaughtPush", "PushCatcher"]

#: notifications kept in memory by default
DEFAULT_MAX_NOTIFICATIONS = 500
#: Apple's payload limit (bytes)
APNS_MAX_BYTES = 4096
#: the scope an FCM access token must be asked for
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
#: the JWT bearer grant (RFC 7523 §2.1)
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: how long the access tokens it gives are valid (seconds)
ACCESS_TOKEN_SECONDS = 3600
#: Apple refuses provider tokens older than an hour
PROVIDER_TOKEN_SECONDS = 3600
#: provider tokens kept verified (a few per app and hour; forgotten all at once beyond)
MAX_PROVIDER_TOKENS = 1000
APNS_PUSH_TYPES = frozenset(
    {"alert", "background", "voip", "liveactivity", "complication", "fileprovider", "mdm"}
)


def _pem_private(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@functools.cache
def _public_key(private_pem: str) -> Any:
    """The public half of a PEM private key, parsed once per key."""
    return serialization.load_pem_private_key(private_pem.encode(), None).public_key()


@dataclass(frozen=True, slots=True)
class CatcherApp:
    """One mobile app the catcher knows: its APNs key and its FCM service account."""

    uuid: str
    name: str
    #: APNs: team id, key id, the app's topic (bundle id) and the PEM EC P-256 private key
    team_id: str
    key_id: str
    topic: str
    apns_key_pem: str
    #: FCM: the project, the service account's email, key id and PEM RSA private key
    project_id: str
    client_email: str
    fcm_key_id: str
    fcm_key_pem: str

    @classmethod
    def generate(
        cls,
        uuid: str = "msgcenter-demo-app",
        name: str = "Demo app",
        *,
        topic: str = "org.msgcenter.demo",
        project_id: str = "msgcenter-demo",
    ) -> CatcherApp:
        """An app with fresh throwaway keys (nothing outside this catcher accepts them)."""
        return cls(
            uuid=uuid,
            name=name,
            team_id=secrets.token_hex(5).upper(),
            key_id=secrets.token_hex(5).upper(),
            topic=topic,
            apns_key_pem=_pem_private(ec.generate_private_key(ec.SECP256R1())),
            project_id=project_id,
            client_email=f"msgcenter@{project_id}.iam.gserviceaccount.com",
            fcm_key_id=secrets.token_hex(20),
            fcm_key_pem=_pem_private(
                rsa.generate_private_key(public_exponent=65537, key_size=2048)
            ),
        )

    def service_account(self, token_uri: str) -> dict[str, str]:
        """The app's service-account key file (as Google's console gives it), as a dict."""
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.fcm_key_id,
            "private_key": self.fcm_key_pem,
            "client_email": self.client_email,
            "token_uri": token_uri,
        }

    def apns_public_key(self) -> Any:
        """The public half of the APNs key (what Apple keeps)."""
        return _public_key(self.apns_key_pem)

    def fcm_public_key(self) -> Any:
        """The public half of the service account's key (what Google keeps)."""
        return _public_key(self.fcm_key_pem)


@dataclass(frozen=True, slots=True)
class CaughtPush:
    """One notification as the catcher received it."""

    id: int
    received: datetime
    #: "ios" (APNs) or "android" (FCM)
    channel: str
    #: the uuid of the app whose credentials sent it
    app: str
    #: the device token it was addressed to
    token: str
    title: str
    body: str
    data: dict[str, str]
    #: APNs: the apns-* headers; FCM: the message's android block, flattened
    headers: dict[str, str]
    #: the JSON body as received (APNs payload, FCM message)
    payload: dict[str, Any]
    #: the HTTP version ("2", "1.1") and the sender's address and port (one per connection)
    http_version: str = ""
    peer: str = ""


@dataclass(slots=True)
class _Failure:
    status: int
    reason: str
    retry_after: int | None
    times: int | None


@dataclass(slots=True)
class _State:
    apps: list[CatcherApp]
    notifications: deque[CaughtPush]
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    access_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    failures: dict[str, list[_Failure]] = field(default_factory=dict)
    #: provider tokens whose signature was checked: their app and ``iat`` (a sender reuses
    #: one for up to an hour, and checking an ES256 signature is most of a request's CPU)
    provider_tokens: dict[str, tuple[CatcherApp, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class PushCatcher:
    """A local APNs + FCM server on ``host:port`` (in a thread of its own) that keeps what it
    receives. ``port`` 0 takes a free port; with ``certfile`` and ``keyfile`` it speaks TLS
    (HTTP/2 by ALPN), else plain HTTP/1.1 and HTTP/2 (prior knowledge). ``goaway_after``
    ends each HTTP/2 connection with a GOAWAY after that many requests (0: never)."""

    def __init__(
        self,
        apps: list[CatcherApp] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        max_notifications: int = DEFAULT_MAX_NOTIFICATIONS,
        goaway_after: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self._tls = certfile is not None
        self._config = Config()
        if certfile is not None:
            self._config.certfile = str(certfile)
            self._config.keyfile = str(keyfile) if keyfile is not None else None
        self._config.accesslog = None
        # one connection for as long as the client keeps it (hypercorn ends one after 1,000
        # requests by default: a real APNs does not), unless ``goaway_after`` asks for a
        # GOAWAY after that many requests (then done as RFC 9113 §6.8 wants, see _GoingAway)
        self._config.keep_alive_max_requests = goaway_after or 2**31
        if goaway_after:
            _answer_after_goaway()
            # read by GracefulH2Protocol: other hypercorn servers of the process are left as is
            self._config.graceful_goaway = True  # type: ignore[attr-defined]
        self._config.errorlog = None
        self._state = _State(apps or [CatcherApp.generate()], deque(maxlen=max_notifications))
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    # -- what the embedded mode and tests use -------------------------------------------

    @property
    def apps(self) -> list[CatcherApp]:
        """The apps whose credentials it accepts."""
        return list(self._state.apps)

    @property
    def url(self) -> str:
        """The base URL of both services (APNs and FCM), e.g. ``http://127.0.0.1:8443``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self._tls else 'http'}://{host}:{self.port}"

    @property
    def token_uri(self) -> str:
        """The FCM OAuth 2.0 token endpoint."""
        return f"{self.url}/token"

    @property
    def notifications(self) -> list[CaughtPush]:
        """The caught notifications, newest first."""
        with self._state.lock:
            return list(reversed(self._state.notifications))

    def clear(self) -> None:
        """Forget the caught notifications."""
        with self._state.lock:
            self._state.notifications.clear()

    def push_settings(self, default_app: str | None = None) -> dict[str, Any]:
        """The ``[push]`` settings (as a dict) that send every app's notifications here."""
        apps = [
            {
                "uuid": app.uuid,
                "name": app.name,
                "apns": {
                    "team_id": app.team_id,
                    "key_id": app.key_id,
                    "key": app.apns_key_pem,
                    "topic": app.topic,
                    "base_url": self.url,
                },
                "fcm": {
                    "service_account": json.dumps(app.service_account(self.token_uri)),
                    "project_id": app.project_id,
                    "base_url": self.url,
                },
            }
            for app in self._state.apps
        ]
        return {"apps": apps, "default_app": default_app or self._state.apps[0].uuid}

    def fail(
        self,
        token: str,
        status: int,
        reason: str,
        *,
        retry_after: int | None = None,
        times: int | None = 1,
    ) -> None:
        """Answer the next ``times`` notifications to ``token`` (None: all) with an error:
        ``status`` and ``reason`` (an APNs reason, or an FCM errorCode / status)."""
        with self._state.lock:
            self._state.failures.setdefault(token, []).append(
                _Failure(status, reason, retry_after, times)
            )

    def expire_access_tokens(self) -> None:
        """Refuse (401) every FCM access token given so far, as when they expire."""
        with self._state.lock:
            self._state.access_tokens.clear()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Listen; returns once the server answers. Raises OSError if the port is taken."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._config.bind = [f"fd://{sock.detach()}"]
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="push-catcher", daemon=True
        )
        self._thread.start()
        ready.wait(10)
        deadline = time.monotonic() + 10
        while True:  # the server listens once hypercorn has started its loop
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop listening and end the server's thread."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._stopping = asyncio.Event()
        ready.set()
        try:
            loop.run_until_complete(
                serve(
                    _application(self._state, self),  # type: ignore[arg-type]
                    self._config,
                    shutdown_trigger=self._stopping.wait,
                )
            )
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


# -- the services -------------------------------------------------------------------------


def _application(state: _State, catcher: PushCatcher) -> Starlette:
    async def apns(request: Request) -> Response:
        return _apns(state, request, await request.body())

    async def token(request: Request) -> Response:
        form = await request.form()
        return _token(state, catcher.token_uri, {k: str(v) for k, v in form.items()})

    async def fcm(request: Request) -> Response:
        return _fcm(state, request, await request.body())

    return Starlette(
        routes=[
            Route("/3/device/{token}", apns, methods=["POST"]),
            Route("/token", token, methods=["POST"]),
            Route("/v1/projects/{project}/messages:send", fcm, methods=["POST"]),
        ]
    )


def _apns_error(status: int, reason: str, retry_after: int | None = None) -> Response:
    headers = {"apns-id": str(uuid.uuid4()).upper()}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    return JSONResponse({"reason": reason}, status_code=status, headers=headers)


def _apns(state: _State, request: Request, raw: bytes) -> Response:
    """APNs: the provider token, the headers, the payload (Apple, "Sending notification
    requests to APNs" and "Handling notification responses from APNs")."""
    authorization = request.headers.get("authorization", "")
    if not authorization.lower().startswith("bearer "):
        return _apns_error(403, "MissingProviderToken")
    provider_token = authorization[7:].strip()
    verified = state.provider_tokens.get(provider_token)
    if verified is None:
        try:
            kid = jwt.get_unverified_header(provider_token).get("kid")
        except jwt.PyJWTError:
            return _apns_error(403, "InvalidProviderToken")
        app = next((a for a in state.apps if a.key_id == kid), None)
        if app is None:
            return _apns_error(403, "InvalidProviderToken")
        try:
            claims = jwt.decode(
                provider_token,
                _public_key(app.apns_key_pem),
                algorithms=["ES256"],
                options={"require": ["iss", "iat"], "verify_iat": False},
            )
        except jwt.PyJWTError:
            return _apns_error(403, "InvalidProviderToken")
        if claims["iss"] != app.team_id:
            return _apns_error(403, "InvalidProviderToken")
        verified = (app, float(claims["iat"]))
        with state.lock:
            if len(state.provider_tokens) >= MAX_PROVIDER_TOKENS:
                state.provider_tokens.clear()
            state.provider_tokens[provider_token] = verified
    app, issued = verified
    if time.time() - issued > PROVIDER_TOKEN_SECONDS:
        return _apns_error(403, "ExpiredProviderToken")
    headers = request.headers
    topic = headers.get("apns-topic")
    if not topic:
        return _apns_error(400, "MissingTopic")
    if topic != app.topic:
        return _apns_error(400, "DeviceTokenNotForTopic")
    if headers.get("apns-push-type", "alert") not in APNS_PUSH_TYPES:
        return _apns_error(400, "InvalidPushType")
    if headers.get("apns-priority", "10") not in ("1", "5", "10"):
        return _apns_error(400, "BadPriority")
    if not headers.get("apns-expiration", "0").isdigit():
        return _apns_error(400, "BadExpirationDate")
    if len(raw) > APNS_MAX_BYTES:
        return _apns_error(413, "PayloadTooLarge")
    try:
        payload = json.loads(raw)
    except ValueError:
        return _apns_error(400, "PayloadEmpty")
    if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
        return _apns_error(400, "PayloadEmpty")
    device = request.path_params["token"]
    failure = _failure(state, device)
    if failure is not None:
        return _apns_error(failure.status, failure.reason, failure.retry_after)
    alert = payload["aps"].get("alert")
    _keep(
        state,
        request,
        "ios",
        app,
        device,
        shown=alert if isinstance(alert, dict) else {"body": alert},
        data={k: str(v) for k, v in payload.items() if k != "aps"},
        headers={k: v for k, v in headers.items() if k.startswith("apns-")},
        payload=payload,
    )
    return Response(status_code=200, headers={"apns-id": str(uuid.uuid4()).upper()})


def _oauth_error(error: str, description: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=400)


def _token(state: _State, token_uri: str, form: dict[str, str]) -> Response:
    """The OAuth 2.0 token endpoint: the JWT bearer grant (RFC 7523 §2.1, §3)."""
    if form.get("grant_type") != JWT_BEARER:
        return _oauth_error("unsupported_grant_type", "grant_type must be the JWT bearer grant")
    assertion = form.get("assertion", "")
    try:
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return _oauth_error("invalid_grant", "the assertion is not a JWT")
    app = next((a for a in state.apps if a.client_email == unverified.get("iss")), None)
    if app is None:
        return _oauth_error("invalid_grant", "unknown service account")
    try:
        claims = jwt.decode(
            assertion,
            _public_key(app.fcm_key_pem),
            algorithms=["RS256"],
            audience=token_uri,
            options={"require": ["iss", "aud", "iat", "exp", "scope"]},
        )
    except jwt.PyJWTError as exc:
        return _oauth_error("invalid_grant", f"invalid assertion: {exc}")
    if FCM_SCOPE not in str(claims["scope"]).split():
        return _oauth_error("invalid_scope", f"the scope must include {FCM_SCOPE}")
    access = "ya29.catcher-" + secrets.token_urlsafe(24)
    with state.lock:
        state.access_tokens[access] = (app.uuid, time.time() + ACCESS_TOKEN_SECONDS)
    return JSONResponse(
        {"access_token": access, "expires_in": ACCESS_TOKEN_SECONDS, "token_type": "Bearer"}
    )


def _fcm_error(status: int, code: str, message: str, retry_after: int | None = None) -> Response:
    """An FCM HTTP v1 error body (google.rpc.Status with an FcmError detail)."""
    statuses = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        503: "UNAVAILABLE",
    }
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": statuses.get(status, "UNKNOWN"),
    }
    if code:
        error["details"] = [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
        ]
    headers = {"retry-after": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _fcm(state: _State, request: Request, raw: bytes) -> Response:
    """FCM HTTP v1 ``messages:send``: the access token, the project, the message."""
    authorization = request.headers.get("authorization", "")
    access = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
    with state.lock:
        given = state.access_tokens.get(access)
    if given is None or given[1] < time.time():
        return _fcm_error(401, "", "Request had invalid authentication credentials.")
    app = next(a for a in state.apps if a.uuid == given[0])
    if request.path_params["project"] != app.project_id:
        return _fcm_error(403, "SENDER_ID_MISMATCH", "the token's project is another one")
    try:
        message = json.loads(raw)["message"]
        device = message["token"]
    except (ValueError, KeyError, TypeError):
        return _fcm_error(400, "INVALID_ARGUMENT", "a message with a token is expected")
    if not isinstance(device, str) or not device:
        return _fcm_error(400, "INVALID_ARGUMENT", "the message has no token")
    data = message.get("data") or {}
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return _fcm_error(400, "INVALID_ARGUMENT", "data values must be strings")
    failure = _failure(state, device)
    if failure is not None:
        return _fcm_error(failure.status, failure.reason, failure.reason, failure.retry_after)
    notification = message.get("notification") or {}
    android = message.get("android") or {}
    headers = {k: str(v) for k, v in android.items() if not isinstance(v, dict)}
    headers.update(
        {f"notification.{k}": str(v) for k, v in (android.get("notification") or {}).items()}
    )
    caught = _keep(
        state,
        request,
        "android",
        app,
        device,
        shown=notification,
        data=dict(data),
        headers=headers,
        payload=message,
    )
    return JSONResponse({"name": f"projects/{app.project_id}/messages/{caught.id}"})


def _failure(state: _State, token: str) -> _Failure | None:
    """The scripted failure for ``token``, counted down."""
    with state.lock:
        queued = state.failures.get(token)
        if not queued:
            return None
        failure = queued[0]
        if failure.times is not None:
            failure.times -= 1
            if failure.times <= 0:
                queued.pop(0)
        return failure


def _keep(
    state: _State,
    request: Request,
    channel: str,
    app: CatcherApp,
    token: str,
    *,
    shown: dict[str, Any],
    data: dict[str, str],
    headers: dict[str, str],
    payload: dict[str, Any],
) -> CaughtPush:
    """Keep one notification; ``shown`` is its APNs alert or FCM notification (title, body)."""
    client = request.client
    with state.lock:
        caught = CaughtPush(
            next(state.ids),
            datetime.now(UTC),
            channel,
            app.uuid,
            token,
            str(shown.get("title") or ""),
            str(shown.get("body") or ""),
            data,
            headers,
            payload,
            http_version=str(request.scope.get("http_version", "")),
            peer=f"{client.host}:{client.port}" if client is not None else "",
        )
        state.notifications.append(caught)
    return caught


# -- a graceful GOAWAY ----------------------------------------------------------------------


class _GoingAway(h2.connection.H2Connection):
    """The server's HTTP/2 connection, with a GOAWAY done as RFC 9113 §6.8 says: the streams
    up to its last stream id are still answered, those above it are refused unprocessed
    (REFUSED_STREAM, §8.7) so that the client sends them again elsewhere.

    hypercorn ends a connection after ``keep_alive_max_requests`` with h2's
    ``close_connection()``, which closes h2's state machine: the requests it has taken are
    processed but never answered, and a client can only send them again (duplicates)."""

    last_stream: int | None = None

    def close_connection(
        self,
        error_code: h2.errors.ErrorCodes | int = 0,
        additional_data: bytes | None = None,
        last_stream_id: int | None = None,
    ) -> None:
        if self.last_stream is not None:
            return
        self.last_stream = self.highest_inbound_stream_id
        self._data_to_send += GoAwayFrame(0, last_stream_id=self.last_stream).serialize()

    def receive_data(self, data: Any) -> list[h2.events.Event]:
        events = super().receive_data(data)
        last = self.last_stream
        if last is None:
            return events
        kept: list[h2.events.Event] = []
        for event in events:
            stream_id = getattr(event, "stream_id", None)
            if not stream_id or stream_id <= last:
                kept.append(event)
            elif isinstance(event, h2.events.RequestReceived):
                self.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        return kept


def _answer_after_goaway() -> None:
    """Make the HTTP/2 connections of the hypercorn servers whose config has
    ``graceful_goaway`` set use :class:`_GoingAway` (hypercorn has no hook for its h2
    connection: the protocol class is replaced, once per process)."""
    # hypercorn.protocol's ProtocolWrapper makes each connection's H2Protocol by that name
    if getattr(getattr(hypercorn.protocol, "H2Protocol"), "graceful_goaway", False):  # noqa: B009
        return

    class GracefulH2Protocol(hypercorn.protocol.h2.H2Protocol):
        graceful_goaway = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not getattr(self.config, "graceful_goaway", False):
                return
            connection = _GoingAway(config=self.connection.config)
            connection.DEFAULT_MAX_INBOUND_FRAME_SIZE = (
                self.connection.DEFAULT_MAX_INBOUND_FRAME_SIZE
            )
            connection.local_settings = self.connection.local_settings
            self.connection = connection

    setattr(hypercorn.protocol, "H2Protocol", GracefulH2Protocol)  # noqa: B010
