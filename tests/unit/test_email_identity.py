"""Message-ID and VERP bounce addresses that name the delivery log (SPEC §3.7)."""

import re

import pytest

from msgcenter.channels.email.identity import (
    domain_of,
    feedback_id,
    installation_tag,
    message_id,
    parse_verp,
    verp_address,
)

SECRET = "s3cret"


def test_message_id_names_the_delivery_log():
    assert message_id(1234, "mail.example.com") == "<dl-1234@mail.example.com>"
    assert message_id(1234, "example.com", instance="exec 2") == "<dl-1234.exec-2@example.com>"


def test_message_ids_carry_the_installation_tag():
    tag = installation_tag()
    assert re.fullmatch(r"[a-z2-7]{16}", tag)
    assert installation_tag() != tag
    assert message_id(7, "example.com", instance="exec", installation=tag) == (
        f"<dl-7.{tag}.exec@example.com>"
    )
    # the same delivery log in two databases: two Message-IDs
    assert message_id(7, "example.com", installation=installation_tag()) != message_id(
        7, "example.com", installation=tag
    )


def test_feedback_id_names_the_stream_with_colons_only_between_parts():
    assert feedback_id("order_confirmation", None, "rt", "exec") == "order_confirmation:-:rt:exec"
    assert feedback_id("a:b c", "brand é", "batch", "exec 2") == "a-b-c:brand-:batch:exec-2"


def test_verp_address_round_trips():
    address = verp_address(1234, "bounces.example.com", SECRET)
    assert address.startswith("bounce+dl-1234-") and address.endswith("@bounces.example.com")
    assert parse_verp(address, SECRET) == 1234
    assert parse_verp(f"<{address.upper()}>", SECRET) == 1234  # relays may change case
    assert parse_verp(verp_address(2**63 - 1, "b.example", SECRET), SECRET) == 2**63 - 1


@pytest.mark.parametrize(
    "address",
    [
        verp_address(1234, "b.example", "another secret"),  # signed by someone else
        verp_address(1234, "b.example", SECRET).replace("dl-1234", "dl-1235"),  # id changed
        "bounce+dl-1234@b.example",  # no tag
        "postmaster@b.example",
        "xbounce+dl-1234-00000000@b.example",
        "",
    ],
)
def test_forged_or_foreign_addresses_match_nothing(address):
    assert parse_verp(address, SECRET) is None


def test_a_secret_is_required():
    with pytest.raises(ValueError, match="secret"):
        verp_address(1, "b.example", "")


def test_domain_of():
    assert domain_of("Shop <Shop@Mail.Example.COM>") == "mail.example.com"
