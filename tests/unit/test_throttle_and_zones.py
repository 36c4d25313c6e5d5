"""Failed-logon throttling, security zones and client addresses (SPEC §3.9), with a fake clock."""

import ipaddress

import pytest

from msgcenter.auth.throttle import FailedLogonThrottle
from msgcenter.auth.zones import Client, SecurityZones
from msgcenter.errors import AuthenticationError, TooManyFailedLoginsError
from msgcenter.settings import SecuritySettings, ZoneSettings


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def throttle(clock):
    """Three failures within 60 s block a key."""
    return FailedLogonThrottle(limit=3, window=60, clock=clock)


def fail(throttle, key, times):
    for _ in range(times):
        throttle.failed(key)


def blocked(throttle, *keys):
    """The error ``check`` raises for ``keys``, or None when they may log on."""
    try:
        throttle.check(*keys)
    except TooManyFailedLoginsError as exc:
        return exc
    return None


# -- FailedLogonThrottle -----------------------------------------------------------------


def test_blocks_at_the_limit_not_before(throttle):
    fail(throttle, "login 'ann'", 2)
    assert blocked(throttle, "login 'ann'") is None
    throttle.failed("login 'ann'")
    error = blocked(throttle, "login 'ann'")
    assert error is not None
    assert error.retry_after == 60
    assert error.detail == "too many failed logons for login 'ann'; retry in 60 s"


def test_block_is_an_authentication_error(throttle):
    fail(throttle, "k", 3)
    with pytest.raises(AuthenticationError):
        throttle.check("k")


def test_retry_after_counts_down_from_the_oldest_failure(throttle, clock):
    throttle.failed("k")
    clock.advance(20)
    fail(throttle, "k", 2)
    clock.advance(15)
    assert blocked(throttle, "k").retry_after == 25  # 60 - 35 s since the first failure


def test_block_ends_when_the_window_slides_past(throttle, clock):
    fail(throttle, "k", 3)
    clock.advance(59.5)
    assert blocked(throttle, "k").retry_after == 1
    clock.advance(0.5)
    assert blocked(throttle, "k") is None


def test_failures_older_than_the_window_do_not_count(throttle, clock):
    fail(throttle, "k", 2)
    clock.advance(61)
    throttle.failed("k")
    assert blocked(throttle, "k") is None
    fail(throttle, "k", 2)
    assert blocked(throttle, "k") is not None


def test_keys_are_counted_apart(throttle):
    fail(throttle, "login 'ann'", 3)
    assert blocked(throttle, "login 'bob'") is None
    assert blocked(throttle, "address 10.0.0.1") is None


def test_failed_counts_every_key_and_check_refuses_if_any_is_blocked(throttle):
    for _ in range(3):
        throttle.failed("login 'ann'", "address 10.0.0.1")
    assert "address 10.0.0.1" in blocked(throttle, "login 'bob'", "address 10.0.0.1").detail
    assert "login 'ann'" in blocked(throttle, "login 'ann'", "address 10.0.0.2").detail
    assert blocked(throttle, "login 'bob'", "address 10.0.0.2") is None


def test_success_resets_only_its_key(throttle):
    for _ in range(2):
        throttle.failed("login 'ann'", "address 10.0.0.1")
    throttle.succeeded("login 'ann'")
    throttle.failed("login 'ann'", "address 10.0.0.1")
    assert blocked(throttle, "login 'ann'") is None
    assert blocked(throttle, "address 10.0.0.1") is not None


# -- SecurityZones -----------------------------------------------------------------------


def zone(name, *networks, **allowed):
    return ZoneSettings(name=name, networks=list(networks), **allowed)


def ip(text):
    return ipaddress.ip_address(text)


def test_default_settings_put_loopback_in_a_permissive_zone():
    zones = SecurityZones(SecuritySettings())
    for address in ("127.0.0.1", "127.0.0.2", "::1"):
        found = zones.zone_for(ip(address))
        assert found.name == "loopback"
        assert found.allow_empty_password and found.allow_login_password_token


def test_default_zone_forbids_empty_passwords_and_the_token_form():
    found = SecurityZones(SecuritySettings()).zone_for(ip("192.0.2.10"))
    assert found.name == "default"
    assert not found.allow_empty_password
    assert not found.allow_login_password_token
    assert found.allow_http


def test_first_matching_zone_wins():
    settings = SecuritySettings(
        zones=[
            zone("office", "10.1.0.0/16", allow_empty_password=True),
            zone("lan", "10.0.0.0/8", "192.168.0.0/16", allow_http=False),
        ],
        default_zone=zone("internet", allow_http=False),
    )
    zones = SecurityZones(settings)
    assert zones.zone_for(ip("10.1.2.3")).name == "office"
    assert zones.zone_for(ip("10.2.0.1")).name == "lan"
    assert zones.zone_for(ip("192.168.5.5")).name == "lan"
    assert zones.zone_for(ip("127.0.0.1")).name == "internet"
    assert zones.zone_for(ip("2001:db8::1")).name == "internet"


def test_ipv6_zone():
    zones = SecurityZones(SecuritySettings(zones=[zone("v6", "2001:db8::/32")]))
    assert zones.zone_for(ip("2001:db8:1::5")).name == "v6"
    assert zones.zone_for(ip("2001:db9::1")).name == "default"


def test_zone_networks_are_parsed_from_strings():
    settings = SecuritySettings.model_validate(
        {"zones": [{"name": "lan", "networks": ["10.0.0.0/8"], "allow_http": False}]}
    )
    assert settings.zones[0].networks == [ipaddress.ip_network("10.0.0.0/8")]
    assert SecurityZones(settings).zone_for(ip("10.9.9.9")).allow_http is False


# -- Client.parse ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("2001:db8::7", "2001:db8::7"),
        (None, "0.0.0.0"),
        ("", "0.0.0.0"),
        ("testclient", "0.0.0.0"),
    ],
)
def test_client_address(host, address):
    assert Client.parse(host).address == ip(address)


def test_ipv4_mapped_client_falls_in_the_ipv4_zone():
    zones = SecurityZones(SecuritySettings(zones=[zone("lan", "10.0.0.0/8")]))
    client = Client.parse("::ffff:10.1.2.3", https=True)
    assert isinstance(client.address, ipaddress.IPv4Address)
    assert client.https
    assert zones.zone_for(client.address).name == "lan"
