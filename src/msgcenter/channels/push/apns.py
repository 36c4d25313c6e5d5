"""The APNs client: HTTP/2 with token-based authentication (Apple, "Sending notification
requests to APNs" and "Establishing a token-based connection to APNs").

One HTTP/2 connection per app is opened on first use and kept; concurrent notifications
are streams of that connection (:mod:`msgcenter.channels.push.http2` multiplexes them, up to
the server's SETTINGS_MAX_CONCURRENT_STREAMS). Every request carries the provider token, an
ES256 JWT signed with the app's .p8 key, which :class:`ProviderToken` renews before Apple's
hour is out; the headers that never change are built once per app.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from urllib.parse import quote

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from msgcenter.channels.push.config import ApnsCredentials
from msgcenter.channels.push.http2 import Http2Client, Http2Error, Response
from msgcenter.channels.push.outcomes import PushOutcome, PushStatus, retry_after, unreachable
from msgcenter.errors import ConfigurationError

#: reasons that say the device token is dead: it is quarantined (Apple, "Handling
#: notification responses from APNs": 400 BadDeviceToken, 410 Unregistered / ExpiredToken)
DEAD_TOKEN_REASONS = frozenset({"BadDeviceToken", "Unregistered", "ExpiredToken"})
#: reasons that say the provider token was refused: renewed once and the request sent again
PROVIDER_TOKEN_REASONS = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})


class ProviderToken:
    """The provider authentication token of one signing key: an ES256 JWT with ``iss`` (team
    id) and ``iat`` claims and a ``kid`` header, reused until ``refresh_seconds`` old.

    Apple refuses a token older than one hour and one renewed more often than every 20
    minutes (TooManyProviderTokenUpdates), so the default renews after 40.
    """

    def __init__(
        self,
        team_id: str,
        key_id: str,
        key_pem: bytes,
        *,
        refresh_seconds: float = 40 * 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                "unusable APNs key", detail=f"key {key_id}: not a PEM private key ({exc})"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ConfigurationError(
                "unusable APNs key", detail=f"key {key_id}: APNs keys are EC P-256 (ES256)"
            )
        self._key = key
        self._team_id = team_id
        self._key_id = key_id
        self._refresh = refresh_seconds
        self._clock = clock
        self._token = ""
        self._issued = 0.0

    def get(self) -> str:
        """The token to send now: the current one, or a new one when it is due for renewal."""
        now = self._clock()
        if not self._token or now - self._issued >= self._refresh:
            self._issue(now)
        return self._token

    def renew(self, refused: str) -> str:
        """A new token after ``refused`` was refused (unless another request renewed it already)."""
        if self._token == refused:
            self._issue(self._clock())
        return self._token

    def _issue(self, now: float) -> None:
        self._token = jwt.encode(
            {"iss": self._team_id, "iat": int(now)},
            self._key,
            algorithm="ES256",
            headers={"kid": self._key_id},
        )
        self._issued = now


class ApnsClient:
    """Sends notifications of one app to APNs over one reused HTTP/2 connection."""

    def __init__(
        self,
        credentials: ApnsCredentials,
        *,
        timeout: float,
        refresh_seconds: float,
        verify: ssl.SSLContext | bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            key_pem = credentials.key_pem()
        except OSError as exc:
            raise ConfigurationError(
                "unreadable APNs key", detail=f"{credentials.key_file}: {exc.strerror}"
            ) from None
        self.token = ProviderToken(
            credentials.team_id,
            credentials.key_id,
            key_pem,
            refresh_seconds=refresh_seconds,
            clock=clock,
        )
        # HTTP/2 only: APNs speaks nothing else (over TLS, ALPN h2; over http://, prior knowledge)
        self._client = Http2Client(credentials.base_url, timeout=timeout, verify=verify)
        # the same for every notification of the app
        self._fixed = [
            (b"apns-topic", credentials.topic.encode()),
            (b"apns-push-type", credentials.push_type.encode()),
            (b"content-type", b"application/json"),
        ]

    async def send(
        self,
        device_token: str,
        payload: bytes,
        *,
        priority: int,
        expiration: int,
        collapse_id: str = "",
    ) -> PushOutcome:
        """POST one notification to ``/3/device/<token>``; every failure comes back as an outcome."""
        headers = self._client.headers("POST", f"/3/device/{quote(device_token, safe='')}")
        headers += self._fixed
        headers.append((b"apns-priority", str(priority).encode()))
        headers.append((b"apns-expiration", str(expiration).encode()))
        if collapse_id:
            headers.append((b"apns-collapse-id", collapse_id.encode()))
        bearer = self.token.get()
        for attempt in range(2):
            authorization = (b"authorization", b"bearer " + bearer.encode())
            try:
                answer = await self._client.request([*headers, authorization], payload)
            except Http2Error as exc:
                return unreachable("APNs", exc)
            if answer.status == 200:
                return PushOutcome(
                    PushStatus.SENT, "accepted by APNs", message_id=answer.headers.get("apns-id")
                )
            reason = _reason(answer)
            if answer.status == 403 and reason in PROVIDER_TOKEN_REASONS and attempt == 0:
                bearer = self.token.renew(bearer)
                continue
            return apns_outcome(answer.status, reason, answer.headers.get("retry-after"))
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns

    async def probe(self) -> bool:
        """Reach the APNs host without sending (any HTTP answer will do)."""
        try:
            await self._client.request(self._client.headers("GET", "/"))
        except Http2Error:
            return False
        return True

    async def close(self) -> None:
        """Close the connection."""
        await self._client.close()


def apns_outcome(status: int, reason: str, retry_after_header: str | None = None) -> PushOutcome:
    """The outcome of an APNs error answer (``status`` and the JSON body's ``reason``)."""
    said = f"APNs {status} {reason}".rstrip()
    if status == 429 or status >= 500:
        return PushOutcome(PushStatus.TEMPORARY, said, retry_after=retry_after(retry_after_header))
    if reason in DEAD_TOKEN_REASONS or status == 410:
        return PushOutcome(PushStatus.PERMANENT, said, quarantine=True)
    if status == 403:
        # the provider token still refused after a renewal: the credentials need fixing,
        # and the messages wait for it within their validity period
        return PushOutcome(PushStatus.TEMPORARY, said)
    return PushOutcome(PushStatus.PERMANENT, said)


def _reason(answer: Response) -> str:
    """The ``reason`` of an APNs error body (``{"reason": "BadDeviceToken"}``)."""
    try:
        body = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return answer.body[:200].decode("utf-8", "replace")
    reason = body.get("reason") if isinstance(body, dict) else None
    return str(reason) if reason else ""
