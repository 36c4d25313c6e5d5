"""Posting webhook messages to their subscribers' URLs (SPEC §3.7).

One HTTP client per worker keeps connections to each receiver open between
posts. Each post goes to an address checked like an attachment URL's
(:mod:`msgcenter.channels.network`): the host is resolved and every address
checked at each attempt (a subscription's name may point elsewhere since it was
saved), the connection goes to the checked address with the name in ``Host``
and TLS SNI, and redirects are not followed (an answer other than 2xx is a
failure, retried with backoff).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx

from msgcenter import __version__
from msgcenter.channels.network import TargetRefusedError, checked_address
from msgcenter.settings import WebhookSettings
from msgcenter.webhooks import Attempt, AttemptResult, signature_headers

#: the answer's first bytes kept in a failed message's last error
ANSWER_CHARS = 200


class WebhookPoster:
    """Posts claimed webhook messages, ``settings.concurrency`` at a time at most."""

    def __init__(self, settings: WebhookSettings) -> None:
        self._settings = settings
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(settings.concurrency)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # trust_env off: a proxy from the environment would connect on our behalf, unchecked
            self._client = httpx.AsyncClient(
                trust_env=False,
                timeout=self._settings.timeout_seconds,
                follow_redirects=False,
                limits=httpx.Limits(
                    max_connections=self._settings.concurrency,
                    max_keepalive_connections=self._settings.concurrency,
                ),
                headers={"user-agent": f"msgcenter/{__version__} webhooks"},
            )
        return self._client

    async def close(self) -> None:
        """Close the kept connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def post_all(self, attempts: Sequence[Attempt]) -> list[AttemptResult]:
        """Post every attempt (at most ``concurrency`` at once); how each ended."""
        return list(await asyncio.gather(*(self._bounded(a) for a in attempts)))

    async def _bounded(self, attempt: Attempt) -> AttemptResult:
        async with self._slots:
            error = await self.post(attempt)
        message = attempt.message
        return AttemptResult(message.id, message.subscription_id, message.attempts, error)

    async def post(self, attempt: Attempt) -> str | None:
        """Post one message, signed now; None when the receiver answered 2xx, else what failed."""
        settings = self._settings
        try:
            async with asyncio.timeout(settings.timeout_seconds):
                target = httpx.URL(attempt.url)
                port = target.port or (443 if target.scheme == "https" else 80)
                address = await checked_address(
                    target.host, port, allow_private_networks=settings.allow_private_networks
                )
                body = attempt.message.payload
                headers = signature_headers(
                    attempt.message.message_id, body, attempt.secrets, datetime.now(UTC)
                )
                response = await self._http().post(
                    target.copy_with(host=address),
                    content=body,
                    headers={
                        **headers,
                        "content-type": "application/json",
                        "host": target.netloc.decode("ascii"),
                    },
                    extensions={"sni_hostname": target.host},  # TLS still verifies the name
                )
        except TimeoutError:
            return f"no answer within {settings.timeout_seconds:g} s"
        except TargetRefusedError as exc:
            return exc.reason
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return f"post failed: {exc!r}"
        if 200 <= response.status_code < 300:
            return None
        answer = response.text[:ANSWER_CHARS].strip()
        return f"HTTP {response.status_code}" + (f": {answer}" if answer else "")
