"""The FCM client: the HTTP v1 API with an OAuth 2.0 access token of a service account.

The access token is obtained with the JWT bearer grant (RFC 7523 §2.1): an RS256 JWT signed
with the service account's key, ``aud`` its ``token_uri`` and ``scope`` the Firebase
messaging scope, exchanged at ``token_uri`` (Google, "Using OAuth 2.0 for Server to Server
Applications"). It is cached until shortly before it expires; a send refused with 401 renews
it once and is sent again. Messages go over one HTTP/2 connection per app
(:mod:`msgcenter.channels.push.http2`); the token endpoint, asked rarely, through httpx.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from msgcenter.channels.push.config import FcmCredentials
from msgcenter.channels.push.http2 import Http2Client, Http2Error, Response
from msgcenter.channels.push.outcomes import PushOutcome, PushStatus, retry_after, unreachable
from msgcenter.errors import ConfigurationError

#: what the access token allows: sending messages (FCM HTTP v1)
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
#: RFC 7523 §2.1
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: an assertion's lifetime (Google accepts at most one hour)
ASSERTION_SECONDS = 3600
#: an access token is renewed this long before it expires
RENEW_MARGIN_SECONDS = 300.0
#: FcmError codes that say the device token is dead (quarantined)
DEAD_TOKEN_CODES = frozenset({"UNREGISTERED"})


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The parts of a Google service-account key file that the token grant needs."""

    client_email: str
    private_key: str
    private_key_id: str
    token_uri: str
    project_id: str

    @classmethod
    def from_json(cls, text: str) -> ServiceAccount:
        """Read a service-account key file's JSON; :class:`ConfigurationError` names what lacks."""
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ConfigurationError(
                "unusable FCM service account", detail=f"not JSON: {exc}"
            ) from None
        if not isinstance(data, dict):
            raise ConfigurationError("unusable FCM service account", detail="not a JSON object")
        missing = [
            name
            for name in ("client_email", "private_key", "token_uri")
            if not isinstance(data.get(name), str) or not data[name]
        ]
        if missing:
            raise ConfigurationError(
                "unusable FCM service account", detail=f"missing {', '.join(missing)}"
            )
        return cls(
            client_email=data["client_email"],
            private_key=data["private_key"],
            private_key_id=str(data.get("private_key_id") or ""),
            token_uri=data["token_uri"],
            project_id=str(data.get("project_id") or ""),
        )


class TokenError(Exception):
    """No access token could be obtained; ``unreachable`` when the token endpoint did not answer."""

    def __init__(self, reason: str, *, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable


class AccessToken:
    """A service account's OAuth 2.0 access token, fetched once and cached until near expiry."""

    def __init__(
        self,
        account: ServiceAccount,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # parsed once: a key that is no RSA key is refused when the client is made
        try:
            key = serialization.load_pem_private_key(account.private_key.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                "unusable FCM service account",
                detail=f"{account.client_email}: private_key is no RSA key ({exc})",
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigurationError(
                "unusable FCM service account",
                detail=f"{account.client_email}: private_key is no RSA key",
            )
        self._key = key
        self._headers = {"kid": account.private_key_id} if account.private_key_id else None
        self._account = account
        self._client = client
        self._clock = clock
        self._token = ""
        self._expires = 0.0
        # one request at a time renews it; the others wait for its token
        self._lock = asyncio.Lock()

    def assertion(self) -> str:
        """The signed JWT that the token endpoint exchanges for an access token."""
        now = int(self._clock())
        return jwt.encode(
            {
                "iss": self._account.client_email,
                "scope": SCOPE,
                "aud": self._account.token_uri,
                "iat": now,
                "exp": now + ASSERTION_SECONDS,
            },
            self._key,
            algorithm="RS256",
            headers=self._headers,
        )

    async def get(self) -> str:
        """A valid access token (fetched when there is none or it expires soon)."""
        if self._token and self._clock() < self._expires - RENEW_MARGIN_SECONDS:
            return self._token
        async with self._lock:
            if self._token and self._clock() < self._expires - RENEW_MARGIN_SECONDS:
                return self._token
            await self._fetch()
            return self._token

    def refused(self, token: str) -> None:
        """``token`` was refused (401): the next :meth:`get` fetches a new one."""
        if self._token == token:
            self._token = ""

    async def _fetch(self) -> None:
        issued = self._clock()
        try:
            answer = await self._client.post(
                self._account.token_uri,
                data={"grant_type": JWT_BEARER, "assertion": self.assertion()},
            )
        except httpx.HTTPError as exc:
            raise TokenError(
                f"FCM token endpoint not reachable: {type(exc).__name__}: {exc}", unreachable=True
            ) from exc
        try:
            body = orjson.loads(answer.content)
        except orjson.JSONDecodeError:
            body = {}
        if answer.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error_description") or body.get("error") if body else ""
            raise TokenError(
                f"FCM access token refused: {answer.status_code} {error or answer.text[:200]}"
            )
        self._token = str(body["access_token"])
        self._expires = issued + float(body.get("expires_in", ASSERTION_SECONDS))


class FcmClient:
    """Sends messages of one app to FCM over one reused HTTP/2 connection."""

    def __init__(
        self,
        credentials: FcmCredentials,
        *,
        timeout: float,
        verify: ssl.SSLContext | bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            text = credentials.account_json()
        except OSError as exc:
            raise ConfigurationError(
                "unreadable FCM service account",
                detail=f"{credentials.service_account_file}: {exc.strerror}",
            ) from None
        self.account = ServiceAccount.from_json(text)
        self.project_id = credentials.project_id or self.account.project_id
        if not self.project_id:
            raise ConfigurationError(
                "FCM project unknown", detail="set project_id: the service account names none"
            )
        # FCM answers over HTTP/2; the token endpoint is another host, asked rarely
        self._client = Http2Client(credentials.base_url, timeout=timeout, verify=verify)
        self._headers = [
            *self._client.headers("POST", f"/v1/projects/{self.project_id}/messages:send"),
            (b"content-type", b"application/json"),
        ]
        self._token_client = httpx.AsyncClient(verify=verify, timeout=timeout)
        self.token = AccessToken(self.account, self._token_client, clock=clock)

    async def send(self, message: dict[str, Any]) -> PushOutcome:
        """POST one ``message`` to ``messages:send``; every failure comes back as an outcome."""
        body = orjson.dumps({"message": message})
        for attempt in range(2):
            try:
                bearer = await self.token.get()
            except TokenError as exc:
                return PushOutcome(PushStatus.TEMPORARY, exc.reason, unreachable=exc.unreachable)
            authorization = (b"authorization", b"Bearer " + bearer.encode())
            try:
                answer = await self._client.request([*self._headers, authorization], body)
            except Http2Error as exc:
                return unreachable("FCM", exc)
            if answer.status == 200:
                return PushOutcome(
                    PushStatus.SENT, "accepted by FCM", message_id=_message_name(answer)
                )
            if answer.status == 401 and attempt == 0:
                self.token.refused(bearer)
                continue
            status, code, text = _error(answer)
            return fcm_outcome(answer.status, status, code, text, answer.headers.get("retry-after"))
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns

    async def probe(self) -> bool:
        """Reach FCM without sending: an access token, then any HTTP answer from the host."""
        try:
            await self.token.get()
            await self._client.request(self._client.headers("GET", "/"))
        except (TokenError, Http2Error):
            return False
        return True

    async def close(self) -> None:
        """Close the connections."""
        await self._client.close()
        await self._token_client.aclose()


def fcm_outcome(
    http_status: int, status: str, code: str, message: str, retry_after_header: str | None = None
) -> PushOutcome:
    """The outcome of an FCM error answer: its HTTP status, the error's ``status``, the
    FcmError ``errorCode`` and message (Firebase, "FCM error codes")."""
    said = f"FCM {http_status} {code or status}: {message}".rstrip(": ")
    if http_status == 429 or http_status >= 500:
        return PushOutcome(PushStatus.TEMPORARY, said, retry_after=retry_after(retry_after_header))
    if code in DEAD_TOKEN_CODES:
        return PushOutcome(PushStatus.PERMANENT, said, quarantine=True)
    if http_status == 401:
        # refused again with a fresh token: the credentials need fixing; the message waits
        return PushOutcome(PushStatus.TEMPORARY, said)
    return PushOutcome(PushStatus.PERMANENT, said)


def _message_name(answer: Response) -> str | None:
    try:
        body = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return None
    name = body.get("name") if isinstance(body, dict) else None
    return str(name) if name else None


def _error(answer: Response) -> tuple[str, str, str]:
    """The error's ``status``, its FcmError ``errorCode`` and its message."""
    text = answer.body[:200].decode("utf-8", "replace")
    try:
        body = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return "", "", text
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", "", text
    code = ""
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            code = str(detail["errorCode"])
            break
    return str(error.get("status") or ""), code, str(error.get("message") or "")[:200]
