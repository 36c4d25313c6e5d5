"""Security zones: which authentication forms each client address may use (SPEC §3.9)."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from msgcenter.settings import SecuritySettings, ZoneSettings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: how many addresses' zones a process remembers before it starts again
MAX_KNOWN_ADDRESSES = 4096


@dataclass(frozen=True, slots=True)
class Client:
    """Who is calling: the peer address (after trusted proxies) and whether over HTTPS."""

    address: IpAddress
    https: bool = False

    @classmethod
    def parse(cls, host: str | None, *, https: bool = False) -> Client:
        """A client from the host string the server saw (unknown hosts count as 0.0.0.0)."""
        return cls(_address_of(host or "0.0.0.0"), https)


@functools.lru_cache(maxsize=4096)
def _address_of(host: str) -> IpAddress:
    """The address of a host string (once per host: ``ipaddress`` parses in Python, and
    intake parses the caller's address on every request)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = ipaddress.ip_address("0.0.0.0")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address


class SecurityZones:
    """Maps a client address to its zone: the first zone whose networks contain it."""

    def __init__(self, settings: SecuritySettings) -> None:
        self._zones = list(settings.zones)
        self._default = settings.default_zone
        #: the zone of each address seen (the settings do not change while running)
        self._known: dict[IpAddress, ZoneSettings] = {}

    def zone_for(self, address: IpAddress) -> ZoneSettings:
        """The zone of ``address`` (the default zone when no network contains it)."""
        zone = self._known.get(address)
        if zone is None:
            if len(self._known) >= MAX_KNOWN_ADDRESSES:
                self._known.clear()
            zone = self._known[address] = self._find(address)
        return zone

    def _find(self, address: IpAddress) -> ZoneSettings:
        for zone in self._zones:
            if any(address in network for network in zone.networks):
                return zone
        return self._default
