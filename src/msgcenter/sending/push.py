"""The push connector: one rendered template to one device through APNs or FCM (SPEC §3.7).

One :class:`PushSender` serves one channel (ios through APNs, android through FCM), so that
each has its own relay health. The event's ``mobile_app_uuid`` (or ``push.default_app``)
picks the app whose credentials are used, its ``registration_token`` (the message's address)
the device. What comes back is mapped as follows:

- accepted: sent, with the service's notification id as message id;
- a dead device token (APNs BadDeviceToken / Unregistered, FCM UNREGISTERED): failed, and
  the token quarantined;
- 429 and 5xx: temporary, retried with backoff but not before the ``Retry-After`` asked;
- the service unreachable, or credentials refused: temporary;
- anything else, an unknown app, a payload over the service's limit: failed for good.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

import structlog

from msgcenter.channels.health import RelayHealth
from msgcenter.channels.push.apns import ApnsClient
from msgcenter.channels.push.config import PushSettings
from msgcenter.channels.push.fcm import FcmClient
from msgcenter.channels.push.outcomes import PushOutcome, PushStatus
from msgcenter.channels.push.payload import PayloadError, apns_payload, fcm_message, push_content
from msgcenter.deliveries import ClaimedMessage, FailureType
from msgcenter.events.model import Channel
from msgcenter.publications import Publication
from msgcenter.render import Ctx, RenderedMessage
from msgcenter.sending.attempts import Attempt, AttemptKind

log = structlog.get_logger(__name__)

#: APNs ``apns-priority`` per ``push.priority``
APNS_PRIORITY = {"high": 10, "normal": 5}


class PushSender:
    """Sends rendered push templates on one channel (ios or android) for every configured app."""

    def __init__(self, settings: PushSettings, channel: Channel) -> None:
        if channel not in (Channel.IOS, Channel.ANDROID):
            raise ValueError(f"{channel.label} is no push channel")
        self._settings = settings
        self._channel = channel
        self._health = RelayHealth(channel.label)
        verify: ssl.SSLContext | bool = True
        if settings.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(settings.ca_file))
        #: the client of each app with credentials for this channel, by uuid
        self._clients: dict[str, ApnsClient | FcmClient] = {}
        for app in settings.apps:
            if channel is Channel.IOS and app.apns is not None:
                self._clients[app.uuid] = ApnsClient(
                    app.apns,
                    timeout=settings.timeout_seconds,
                    refresh_seconds=settings.token_refresh_minutes * 60,
                    verify=verify,
                )
            elif channel is Channel.ANDROID and app.fcm is not None:
                self._clients[app.uuid] = FcmClient(
                    app.fcm, timeout=settings.timeout_seconds, verify=verify
                )

    @property
    def apps(self) -> list[str]:
        """The uuids of the apps this sender can reach."""
        return sorted(self._clients)

    async def send(
        self, message: ClaimedMessage, publication: Publication, rendered: RenderedMessage, ctx: Ctx
    ) -> Attempt:
        """Send one notification; every failure comes back as an :class:`Attempt`."""
        named = message.event.get("mobile_app_uuid")
        app = self._settings.app(named)
        if app is None:
            known = ", ".join(a.uuid for a in self._settings.apps) or "none"
            if named:
                reason = f"unknown mobileApp uuid {named!r} (apps: {known})"
            else:
                reason = f"no mobileApp uuid and no push.default_app (apps: {known})"
            return Attempt(AttemptKind.PERMANENT, reason)
        client = self._clients.get(app.uuid)
        try:
            content = push_content(rendered)
            if client is None:
                return self._no_credentials(app.uuid)
            if isinstance(client, ApnsClient):
                outcome = await client.send(
                    message.address,
                    apns_payload(content),
                    priority=APNS_PRIORITY[self._settings.priority],
                    expiration=int(message.valid_until.timestamp()),
                    collapse_id=content.collapse_id,
                )
            else:
                ttl = (message.valid_until - datetime.now(UTC)).total_seconds()
                outcome = await client.send(
                    fcm_message(
                        content,
                        message.address,
                        high_priority=self._settings.priority == "high",
                        ttl_seconds=int(ttl),
                    )
                )
        except PayloadError as exc:
            return Attempt(AttemptKind.PERMANENT, str(exc))
        return self._attempt(outcome)

    def _no_credentials(self, uuid: str) -> Attempt:
        service = "APNs" if self._channel is Channel.IOS else "FCM"
        return Attempt(
            AttemptKind.PERMANENT,
            f"app {uuid!r} has no {service} credentials for the {self._channel.label} channel",
        )

    def _attempt(self, outcome: PushOutcome) -> Attempt:
        if outcome.unreachable:
            self._health.failed(outcome.reason)
        else:
            self._health.succeeded()
        if outcome.status is PushStatus.SENT:
            return Attempt(AttemptKind.SENT, outcome.reason, message_id=outcome.message_id)
        if outcome.status is PushStatus.TEMPORARY:
            return Attempt(
                AttemptKind.TEMPORARY,
                outcome.reason,
                failure_type=FailureType.SOFT,
                retry_after=outcome.retry_after,
            )
        return Attempt(
            AttemptKind.PERMANENT,
            outcome.reason,
            failure_type=FailureType.USER_UNKNOWN if outcome.quarantine else FailureType.HARD,
            quarantine=outcome.quarantine,
        )

    @property
    def health(self) -> RelayHealth:
        """Whether the push service can be reached."""
        return self._health

    async def probe(self) -> bool:
        """Reach each app's push service without sending; whether all answered."""
        answered = True
        for client in self._clients.values():
            answered = await client.probe() and answered
        if answered:
            self._health.succeeded()
        return answered

    async def start(self) -> None:
        """Nothing to open ahead: each app's connection opens with its first notification."""

    async def close(self) -> None:
        """Close the connections."""
        for client in self._clients.values():
            await client.close()


def build_push_senders(settings: PushSettings) -> dict[Channel, PushSender]:
    """The push senders ``settings`` call for: ios when an app has APNs credentials, android
    when one has FCM credentials; none without apps."""
    senders: dict[Channel, PushSender] = {}
    if any(app.apns is not None for app in settings.apps):
        senders[Channel.IOS] = PushSender(settings, Channel.IOS)
    if any(app.fcm is not None for app in settings.apps):
        senders[Channel.ANDROID] = PushSender(settings, Channel.ANDROID)
    if senders:
        log.info(
            "push channels ready",
            action="push.configured",
            channels=[channel.label for channel in senders],
            apps=[app.uuid for app in settings.apps],
            default_app=settings.default_app or None,
        )
    return senders
