"""The push channel: APNs (HTTP/2, token authentication) and FCM (HTTP v1) clients, the
notification payloads and their settings (SPEC §3.7 "Push")."""

from msgcenter.channels.push.apns import ApnsClient, ProviderToken
from msgcenter.channels.push.config import ApnsCredentials, FcmCredentials, PushApp, PushSettings
from msgcenter.channels.push.fcm import AccessToken, FcmClient, ServiceAccount
from msgcenter.channels.push.outcomes import PushOutcome, PushStatus
from msgcenter.channels.push.payload import PayloadError, PushContent, push_content

__all__ = [
    "AccessToken",
    "ApnsClient",
    "ApnsCredentials",
    "FcmClient",
    "FcmCredentials",
    "PayloadError",
    "ProviderToken",
    "PushApp",
    "PushContent",
    "PushOutcome",
    "PushSettings",
    "PushStatus",
    "ServiceAccount",
    "push_content",
]
