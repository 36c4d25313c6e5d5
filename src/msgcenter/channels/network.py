"""Outbound connections to URLs that outside parties choose (attachment URLs in an event's
``ctx``, webhook targets): the guard against reaching into the private network (SSRF).

The host is resolved first and every address it resolves to is checked before
anything connects; the caller then connects to the checked address (so that a
second DNS answer cannot differ) and sends the name in ``Host`` and TLS SNI.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

from msgcenter.errors import MsgcenterError

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefusedError(MsgcenterError):
    """A URL's host cannot be connected to; ``temporary`` says whether a later try may succeed."""

    code = "target-refused"

    def __init__(self, reason: str, *, temporary: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary


def is_public_address(address: IpAddress) -> bool:
    """Whether ``address`` is globally routable (not loopback, private, link-local, shared, reserved…).

    An IPv6 address that embeds an IPv4 one (mapped, 6to4) is judged by the IPv4 address.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            address = embedded
    return address.is_global and not address.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (temporary :class:`TargetRefusedError` if none)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetRefusedError(f"cannot resolve {host}: {exc.strerror}", temporary=True) from exc
    return [str(info[4][0]) for info in infos]


def refuse_private(host: str, addresses: Sequence[str]) -> None:
    """Raise a permanent :class:`TargetRefusedError` when any of ``addresses`` (those ``host``
    resolves to) is not public."""
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
        if not is_public_address(address):
            raise TargetRefusedError(
                f"{host} resolves to {address}, which is not a public address "
                "(allow_private_networks is off)"
            )


async def checked_address(host: str, port: int, *, allow_private_networks: bool) -> str:
    """An address of ``host`` to connect to, after checking every address it resolves to
    (unless ``allow_private_networks``)."""
    addresses = await resolve(host, port)
    if not allow_private_networks:
        refuse_private(host, addresses)
    return addresses[0]
