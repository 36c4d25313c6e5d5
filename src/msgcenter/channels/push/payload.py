"""The JSON bodies of a push notification for APNs and FCM, with their size limits.

APNs: the payload is a JSON object whose ``aps`` dictionary holds the alert, sound and
badge, and whose other top-level keys are the app's custom data; it may not exceed
4096 bytes (Apple, "Generating a remote notification", payload size). FCM HTTP v1: a
``message`` with ``notification`` (title, body), ``data`` (string values only) and an
``android`` block; its notification and data may not exceed 4000 bytes (Firebase, "About FCM
messages"). A notification over its limit fails for good with the size in the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from msgcenter.render import RenderedMessage

#: Apple's limit on the whole payload (bytes)
APNS_MAX_BYTES = 4096
#: Firebase's limit on a message's notification and data (bytes)
FCM_MAX_BYTES = 4000
#: Apple's limit on ``apns-collapse-id`` (bytes)
APNS_MAX_COLLAPSE_ID_BYTES = 64


class PayloadError(ValueError):
    """The notification cannot be built (too large, a badge that is no number …): permanent."""


@dataclass(frozen=True, slots=True)
class PushContent:
    """What one notification shows and carries, read from the rendered template."""

    title: str = ""
    body: str = ""
    sound: str = ""
    badge: int | None = None
    collapse_id: str = ""
    data: dict[str, str] = field(default_factory=dict)


def push_content(rendered: RenderedMessage) -> PushContent:
    """The notification of a rendered push template; raises :class:`PayloadError` when the
    badge does not render to a whole number, or the template has nothing to show."""
    badge_text = rendered.push_badge.strip()
    badge: int | None = None
    if badge_text:
        try:
            badge = int(badge_text)
        except ValueError:
            raise PayloadError(
                f"push_badge renders {badge_text[:40]!r}, not a whole number"
            ) from None
        if badge < 0:
            raise PayloadError(f"push_badge renders {badge}, below 0")
    title, body = rendered.push_title.strip(), rendered.push_body.strip()
    if not title and not body:
        raise PayloadError("the push title and body both render empty: nothing to show")
    return PushContent(
        title=title,
        body=body,
        sound=rendered.push_sound.strip(),
        badge=badge,
        collapse_id=rendered.push_collapse_id.strip(),
        data=dict(rendered.push_data),
    )


def apns_payload(content: PushContent) -> bytes:
    """The APNs request body (compact JSON); raises :class:`PayloadError` over 4096 bytes."""
    alert: dict[str, str] = {}
    if content.title:
        alert["title"] = content.title
    if content.body:
        alert["body"] = content.body
    aps: dict[str, Any] = {"alert": alert}
    if content.sound:
        aps["sound"] = content.sound
    if content.badge is not None:
        aps["badge"] = content.badge
    body = orjson.dumps({**content.data, "aps": aps})
    if len(body) > APNS_MAX_BYTES:
        raise PayloadError(
            f"the APNs payload is {len(body)} bytes, over Apple's limit of {APNS_MAX_BYTES}"
        )
    if len(content.collapse_id.encode()) > APNS_MAX_COLLAPSE_ID_BYTES:
        raise PayloadError(
            f"the collapse id is over Apple's limit of {APNS_MAX_COLLAPSE_ID_BYTES} bytes"
        )
    return body


def fcm_message(
    content: PushContent, token: str, *, high_priority: bool, ttl_seconds: int
) -> dict[str, Any]:
    """The FCM HTTP v1 ``message`` for device ``token``; raises :class:`PayloadError` when its
    notification and data exceed 4000 bytes."""
    notification: dict[str, str] = {}
    if content.title:
        notification["title"] = content.title
    if content.body:
        notification["body"] = content.body
    size = len(orjson.dumps({"notification": notification, "data": content.data}))
    if size > FCM_MAX_BYTES:
        raise PayloadError(
            f"the FCM notification and data are {size} bytes, over Google's limit of "
            f"{FCM_MAX_BYTES}"
        )
    android: dict[str, Any] = {
        "priority": "high" if high_priority else "normal",
        "ttl": f"{max(ttl_seconds, 0)}s",
    }
    if content.collapse_id:
        android["collapse_key"] = content.collapse_id
    android_notification: dict[str, Any] = {}
    if content.sound:
        android_notification["sound"] = content.sound
    if content.badge is not None:
        android_notification["notification_count"] = content.badge
    if android_notification:
        android["notification"] = android_notification
    message: dict[str, Any] = {"token": token, "notification": notification, "android": android}
    if content.data:
        message["data"] = content.data
    return message
