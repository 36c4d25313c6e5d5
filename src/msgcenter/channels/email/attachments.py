"""Attachments fetched from a URL given in an event's ``ctx``, within limits (SPEC §3.7).

The URL comes from an outside system, so fetching it must not become a way
into the private network (SSRF): the host is resolved first and every address
checked before anything connects, the connection goes to the checked address
(so a second DNS answer cannot differ), and each redirect is checked the same way
(:mod:`msgcenter.channels.network`, shared with the webhook targets).
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Sequence
from email.message import Message
from urllib.parse import unquote

import httpx

from msgcenter.channels.email.config import AttachmentSettings
from msgcenter.channels.email.mime import Attachment
from msgcenter.channels.network import TargetRefusedError, checked_address
from msgcenter.errors import MsgcenterError
from msgcenter.publications import AttachmentSpec
from msgcenter.render import Ctx


class AttachmentError(MsgcenterError):
    """An attachment could not be fetched; ``temporary`` says whether a later try may succeed."""

    code = "attachment-failed"

    def __init__(self, url: str, reason: str, *, temporary: bool = False) -> None:
        super().__init__(f"attachment {_shown(url)}: {reason}")
        self.url = url
        self.reason = reason
        self.temporary = temporary


async def fetch_attachments(
    specs: Sequence[AttachmentSpec], ctx: Ctx, settings: AttachmentSettings
) -> list[Attachment]:
    """A template's attachments for one event (fixed URLs, or URLs read from its ``ctx``),
    fetched concurrently; the first failure raises :class:`AttachmentError`."""
    return list(await asyncio.gather(*(_fetch_spec(spec, ctx, settings) for spec in specs)))


async def _fetch_spec(spec: AttachmentSpec, ctx: Ctx, settings: AttachmentSettings) -> Attachment:
    url = spec.url or _ctx_text(ctx, spec.ctx_url or "")
    if not url:
        raise AttachmentError(spec.ctx_url or "", f"ctx has no URL at '{spec.ctx_url}'")
    fetched = await fetch_attachment(url, settings)
    if spec.filename:
        return Attachment(spec.filename, fetched.content_type, fetched.data)
    return fetched


def _ctx_text(ctx: Ctx, path: str) -> str:
    node = ctx
    for part in filter(None, path.split(".")):
        node = node[part]
    return str(node).strip()


async def fetch_attachment(url: str, settings: AttachmentSettings) -> Attachment:
    """Download ``url`` as an attachment, or raise :class:`AttachmentError` naming the problem.

    Refused (permanent): a scheme not in ``allowed_schemes``, a host with any
    non-public address unless ``allow_private_networks``, more than
    ``max_redirects`` redirects, an HTTP 4xx, a body over ``max_bytes`` (reading
    stops there). Temporary: no answer within ``timeout_seconds`` for the whole
    fetch, a name that does not resolve, a refused connection, HTTP 429 or 5xx.
    """
    try:
        async with asyncio.timeout(settings.timeout_seconds):
            return await _fetch(url, settings)
    except TimeoutError:
        raise AttachmentError(
            url, f"not fetched within {settings.timeout_seconds:g} s", temporary=True
        ) from None


async def _fetch(url: str, settings: AttachmentSettings) -> Attachment:
    # trust_env off: a proxy from the environment would connect on our behalf, unchecked
    async with httpx.AsyncClient(trust_env=False, timeout=settings.timeout_seconds) as client:
        for _ in range(settings.max_redirects + 1):
            target = _parse(url, settings)
            address = await _checked_address(url, target, settings)
            request = client.build_request(
                "GET",
                target.copy_with(host=address),
                # identity: the size limit then bounds what the server sends, not a decompressed bomb
                headers={"Host": target.netloc.decode("ascii"), "Accept-Encoding": "identity"},
                extensions={"sni_hostname": target.host},  # TLS still verifies the name
            )
            try:
                response = await client.send(request, stream=True)
                try:
                    if response.is_redirect:
                        url = str(target.join(response.headers["location"]))
                        continue
                    _check_status(url, response.status_code)
                    data = await _read(url, response, settings.max_bytes)
                finally:
                    await response.aclose()
            except httpx.HTTPError as exc:
                raise AttachmentError(url, f"transfer failed: {exc!r}", temporary=True) from exc
            filename = _filename(response, target)
            return Attachment(filename, _content_type(response, filename), data)
    raise AttachmentError(url, f"more than {settings.max_redirects} redirects")


def _parse(url: str, settings: AttachmentSettings) -> httpx.URL:
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise AttachmentError(url, f"not a valid URL: {exc}") from exc
    if target.scheme not in settings.allowed_schemes:
        allowed = ", ".join(settings.allowed_schemes)
        raise AttachmentError(
            url, f"scheme {target.scheme or '(none)'!r} is not allowed ({allowed})"
        )
    if not target.host:
        raise AttachmentError(url, "the URL names no host")
    return target


async def _checked_address(url: str, target: httpx.URL, settings: AttachmentSettings) -> str:
    """An address of the target host, after checking every address it resolves to."""
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        return await checked_address(
            target.host, port, allow_private_networks=settings.allow_private_networks
        )
    except TargetRefusedError as exc:
        raise AttachmentError(url, exc.reason, temporary=exc.temporary) from exc


def _check_status(url: str, status: int) -> None:
    if status == 200:
        return
    # 429 and 5xx may pass; other codes will not change on their own
    temporary = status == 429 or status >= 500
    raise AttachmentError(url, f"the server answered HTTP {status}", temporary=temporary)


async def _read(url: str, response: httpx.Response, limit: int) -> bytes:
    announced = response.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > limit:
        raise AttachmentError(
            url, f"{int(announced)} bytes announced, more than the limit of {limit}"
        )
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise AttachmentError(url, f"larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _filename(response: httpx.Response, target: httpx.URL) -> str:
    """The name from Content-Disposition (RFC 6266, RFC 2231 included), else the URL's last segment."""
    disposition = response.headers.get("content-disposition")
    if disposition:
        header = Message()
        header["Content-Disposition"] = disposition
        name = header.get_filename()
        if name:
            return name
    return unquote(target.path.rsplit("/", 1)[-1]) or "attachment"


def _content_type(response: httpx.Response, filename: str) -> str:
    """The server's Content-Type (parameters kept), or a guess from the name when it says nothing useful."""
    announced = str(response.headers.get("content-type", ""))
    media_type = announced.split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/octet-stream":
        return announced
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _shown(url: str) -> str:
    """The URL without credentials or query, which may hold secrets, for messages and logs."""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        return repr(url[:100])
    return str(target.copy_with(query=None, fragment=None, userinfo=b""))
