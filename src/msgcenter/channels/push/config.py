"""Settings of the push channel, mounted into the instance settings as ``[push]`` and
``[[push.apps]]`` (SPEC §3.7 "Push").

Each mobile app an event may name (``<mobileApp uuid=…>``, REST ``mobile_app_uuid``) is one
``[[push.apps]]`` entry with its Apple (APNs, token authentication) and/or Google (FCM HTTP v1,
service account) credentials. Secrets are given as a file path or inline (``SecretStr``, masked
in logs and errors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

#: Apple's production endpoint (the sandbox one is https://api.sandbox.push.apple.com)
APNS_BASE_URL = "https://api.push.apple.com"
#: Google's FCM HTTP v1 endpoint
FCM_BASE_URL = "https://fcm.googleapis.com"


def _one_of(file: Path | None, inline: SecretStr, what: str) -> None:
    if (file is None) == (not inline.get_secret_value()):
        raise ValueError(f"give {what} either as a file or inline, exactly one of them")


class ApnsCredentials(BaseModel):
    """An app's Apple Push Notification service credentials (token-based authentication)."""

    model_config = ConfigDict(extra="forbid")

    #: the Apple developer team id (the JWT's ``iss``)
    team_id: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9]+$")
    #: the id of the signing key (the JWT's ``kid``)
    key_id: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9]+$")
    #: the .p8 file Apple gave for that key (a PEM EC P-256 private key) …
    key_file: Path | None = None
    #: … or its PEM text inline
    key: SecretStr = SecretStr("")
    #: the app's bundle id, sent as ``apns-topic`` (with .voip etc. for those push types)
    topic: str = Field(min_length=1, max_length=255)
    #: ``apns-push-type``: what the notifications are (alert shows a title and body)
    push_type: Literal["alert", "background", "voip", "liveactivity"] = "alert"
    #: where the notifications go; https://api.sandbox.push.apple.com for development builds
    base_url: str = APNS_BASE_URL

    @model_validator(mode="after")
    def _one_key(self) -> ApnsCredentials:
        _one_of(self.key_file, self.key, "the APNs key (key_file or key)")
        return self

    def key_pem(self) -> bytes:
        """The signing key's PEM text (read from ``key_file`` when it is set)."""
        if self.key_file is not None:
            return self.key_file.read_bytes()
        return self.key.get_secret_value().encode()


class FcmCredentials(BaseModel):
    """An app's Firebase Cloud Messaging credentials (HTTP v1 API, a service account)."""

    model_config = ConfigDict(extra="forbid")

    #: the service-account JSON key file downloaded from the Firebase console …
    service_account_file: Path | None = None
    #: … or its JSON text inline
    service_account: SecretStr = SecretStr("")
    #: the Firebase project id; empty means the service account's ``project_id``
    project_id: str = Field("", max_length=128, pattern=r"^[A-Za-z0-9-]*$")
    #: where the messages go (``{base_url}/v1/projects/{project_id}/messages:send``)
    base_url: str = FCM_BASE_URL

    @model_validator(mode="after")
    def _one_account(self) -> FcmCredentials:
        _one_of(
            self.service_account_file,
            self.service_account,
            "the FCM service account (service_account_file or service_account)",
        )
        return self

    def account_json(self) -> str:
        """The service account's JSON text (read from ``service_account_file`` when it is set)."""
        if self.service_account_file is not None:
            return self.service_account_file.read_text("utf-8")
        return self.service_account.get_secret_value()


class PushApp(BaseModel):
    """One mobile app: the uuid events name it by, and its credentials per platform."""

    model_config = ConfigDict(extra="forbid")

    #: the key events give as ``<mobileApp uuid=…>`` (SOAP) or ``mobile_app_uuid`` (REST)
    uuid: str = Field(min_length=1, max_length=255)
    #: a name for logs and pages
    name: str = ""
    #: iOS (wishedChannel 41); without it, ios events of this app fail
    apns: ApnsCredentials | None = None
    #: Android (wishedChannel 42); without it, android events of this app fail
    fcm: FcmCredentials | None = None


class PushSettings(BaseModel):
    """The push channel: the apps, and how notifications are sent to APNs and FCM."""

    model_config = ConfigDict(extra="forbid")

    #: the apps ([[push.apps]]); push is sent only when at least one is configured
    apps: list[PushApp] = Field(default_factory=list)
    #: uuid of the app of the events that name none; empty: the only app, when there is one
    default_app: str = ""
    #: "high" delivers at once and wakes the device (APNs priority 10, FCM high);
    #: "normal" lets the device save power (APNs 5, FCM normal)
    priority: Literal["high", "normal"] = "high"
    #: seconds allowed for connecting and for each request
    timeout_seconds: float = Field(default=10.0, gt=0)
    #: the APNs provider token (a JWT) is renewed after this many minutes (Apple refuses one
    #: older than 60 minutes and a renewal more often than every 20)
    token_refresh_minutes: int = Field(default=40, ge=20, le=55)
    #: CA bundle (PEM) trusted for the push services' certificates instead of the system
    #: store: for tests and private gateways
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _apps_known(self) -> PushSettings:
        uuids = [app.uuid for app in self.apps]
        doubles = sorted({uuid for uuid in uuids if uuids.count(uuid) > 1})
        if doubles:
            raise ValueError(f"apps: uuid {', '.join(doubles)} given more than once")
        if self.default_app and self.default_app not in uuids:
            raise ValueError(f"default_app {self.default_app!r} is none of the apps' uuids")
        return self

    def app(self, uuid: str | None) -> PushApp | None:
        """The app ``uuid`` names, or the default app when it names none."""
        wanted = uuid or self.default_app
        if not wanted:
            return self.apps[0] if len(self.apps) == 1 else None
        return next((app for app in self.apps if app.uuid == wanted), None)
