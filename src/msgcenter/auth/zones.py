"""Security zones: which authentication forms each client address may use (SPEC §3.9)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from msgcenter.settings import SecuritySettings, ZoneSettings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Client:
    """Who is calling: the peer address (after trusted proxies) and whether over HTTPS."""

    address: IpAddress
    https: bool = False

    @classmethod
    def parse(cls, host: str | None, *, https: bool = False) -> Client:
        """A client from the host string the server saw (unknown hosts count as 0.0.0.0)."""
        try:
            address = ipaddress.ip_address(host or "0.0.0.0")
        except ValueError:
            address = ipaddress.ip_address("0.0.0.0")
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return cls(address, https)


class SecurityZones:
    """Maps a client address to its zone: the first zone whose networks contain it."""

    def __init__(self, settings: SecuritySettings) -> None:
        self._zones = list(settings.zones)
        self._default = settings.default_zone

    def zone_for(self, address: IpAddress) -> ZoneSettings:
        """The zone of ``address`` (the default zone when no network contains it)."""
        for zone in self._zones:
            if any(address in network for network in zone.networks):
                return zone
        return self._default
