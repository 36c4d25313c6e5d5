"""Failed-logon throttling, security zones and client addresses (SPEC §3.9), with a fake clock."""

import ipaddress

import pytest

from msgcenter.auth.throttle import FailedLogonThrottle, ThrottlePolicy
from msgcenter.auth.zones import Client, SecurityZones
from msgcenter.errors import AuthenticationError, TooManyFailedLoginsError
from msgcenter.settings import SecuritySettings, ZoneSettings
from tests.conftest import FakeClock


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def throttle(clock):
    """Three free failures per (login, address), ten per address, a 60 s window, delays up to 8 s."""
    policy = ThrottlePolicy(login_limit=3, address_limit=10, window=60, max_delay=8)
    return FailedLogonThrottle(policy, clock=clock)


def fail(throttle, login, address, times):
    for _ in range(times):
        throttle.failed(login, address)


def blocked(throttle, login, address):
    """The error ``check`` raises for ``login`` from ``address``, or None when it may try."""
    try:
        throttle.check(login, address)
    except TooManyFailedLoginsError as exc:
        return exc
    return None


# -- FailedLogonThrottle -----------------------------------------------------------------


def test_a_login_waits_only_past_its_limit(throttle):
    fail(throttle, "ann", "10.0.0.1", 2)
    assert blocked(throttle, "ann", "10.0.0.1") is None
    throttle.failed("ann", "10.0.0.1")
    error = blocked(throttle, "ann", "10.0.0.1")
    assert error is not None
    assert error.retry_after == 1
    # the message names neither the login nor whether it exists
    assert error.detail == "too many failed logons from 10.0.0.1; retry in 1 s"
    assert "ann" not in error.detail


def test_block_is_an_authentication_error(throttle):
    fail(throttle, "ann", "10.0.0.1", 3)
    with pytest.raises(AuthenticationError):
        throttle.check("ann", "10.0.0.1")


def test_delays_double_with_each_failure_up_to_the_maximum(throttle, clock):
    fail(throttle, "ann", "10.0.0.1", 3)
    waits = []
    for _ in range(6):
        waits.append(blocked(throttle, "ann", "10.0.0.1").retry_after)
        clock.advance(waits[-1])
        assert blocked(throttle, "ann", "10.0.0.1") is None  # a delay, not a lockout
        throttle.failed("ann", "10.0.0.1")
    assert waits == [1, 2, 4, 8, 8, 8]


def test_failures_older_than_the_window_are_forgotten(throttle, clock):
    fail(throttle, "ann", "10.0.0.1", 3)
    clock.advance(61)
    assert blocked(throttle, "ann", "10.0.0.1") is None
    fail(throttle, "ann", "10.0.0.1", 2)
    assert blocked(throttle, "ann", "10.0.0.1") is None


def test_a_bystander_behind_the_same_address_is_not_slowed(throttle):
    """One client failing for its login (a NAT, or someone trying to lock 'ann' out) leaves
    another login from that address, and 'ann' from elsewhere, free."""
    fail(throttle, "ann", "10.0.0.1", 9)
    assert blocked(throttle, "ann", "10.0.0.1") is not None
    assert blocked(throttle, "bob", "10.0.0.1") is None
    assert blocked(throttle, "ann", "10.0.0.2") is None


def test_an_address_failing_for_many_logins_is_slowed_past_its_own_limit(throttle):
    for n in range(10):
        throttle.failed(f"user{n}", "10.0.0.1")
    assert blocked(throttle, "someone", "10.0.0.1").retry_after == 1
    assert blocked(throttle, None, "10.0.0.1") is not None  # tokens from it too
    assert blocked(throttle, "someone", "10.0.0.2") is None


def test_success_clears_its_login_only(throttle):
    fail(throttle, "ann", "10.0.0.1", 3)
    fail(throttle, None, "10.0.0.1", 7)
    throttle.succeeded("ann", "10.0.0.1")
    assert blocked(throttle, "ann", "10.0.0.1").retry_after == 1  # the address's 10 failures
    throttle.succeeded("ann", "10.0.0.2")


def test_forgotten_keys_are_dropped(throttle, clock):
    for n in range(100):
        throttle.failed(f"user{n}", f"10.0.{n}.1")
    assert throttle.tracked() == 200
    clock.advance(61)
    throttle.failed("ann", "10.0.0.1")
    assert throttle.tracked() == 2


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
