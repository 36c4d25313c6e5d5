"""SMS encoding (GSM 03.38 / UCS-2, UDH concatenation), sender ids, receipts read from PDUs."""

from __future__ import annotations

import pytest
from aiosmpplib import SmppCommandStatus

from msgcenter.channels.sms import pdu
from msgcenter.channels.sms.config import SmsSettings
from msgcenter.channels.sms.encoding import DataCoding, count_parts, decode, encode
from msgcenter.sending.sms import is_temporary, source_address


def joined(text: str) -> str:
    encoded = encode(text, reference=7)
    udhi = encoded.concatenated
    return "".join(decode(part, encoded.data_coding, udhi=udhi).text for part in encoded.parts)


@pytest.mark.parametrize(
    ("text", "coding", "parts"),
    [
        ("a" * 160, DataCoding.GSM, 1),
        ("a" * 161, DataCoding.GSM, 2),
        ("a" * 306, DataCoding.GSM, 2),
        ("a" * 307, DataCoding.GSM, 3),
        ("€" * 80, DataCoding.GSM, 1),  # an extension character takes two septets
        ("€" * 81, DataCoding.GSM, 2),
        ("é" * 160, DataCoding.GSM, 1),  # é is in the basic table
        ("ж" * 70, DataCoding.UCS2, 1),
        ("ж" * 71, DataCoding.UCS2, 2),
        ("ж" * 134, DataCoding.UCS2, 2),
        ("ж" * 135, DataCoding.UCS2, 3),
        ("a" * 159 + "ç", DataCoding.UCS2, 3),  # ç (lower case) is not GSM: all UCS-2
    ],
)
def test_coding_and_parts(text, coding, parts):
    encoded = encode(text, reference=1)
    assert (encoded.data_coding, len(encoded.parts)) == (coding, parts)
    assert count_parts(text) == parts
    assert joined(text) == text


def test_parts_carry_a_concatenation_udh_and_fit():
    encoded = encode("x" * 400, reference=0x1FF)
    assert [p[:6] for p in encoded.parts] == [bytes((5, 0, 3, 0xFF, 3, n)) for n in (1, 2, 3)]
    assert [len(p) - 6 for p in encoded.parts] == [153, 153, 94]


def test_an_escape_is_never_separated_from_its_character():
    text = "a" * 152 + "€" + "b" * 10  # the € would straddle parts 1 and 2
    encoded = encode(text, reference=1)
    assert len(encoded.parts[0]) - 6 == 152  # part 1 stops before the escape
    assert encoded.parts[1][6:8] == b"\x1b\x65"
    assert joined(text) == text


def test_a_surrogate_pair_is_never_split():
    text = "ж" * 66 + "👋" + "ж" * 10  # the emoji's four octets would straddle octet 134
    encoded = encode(text, reference=1)
    assert len(encoded.parts[0]) - 6 == 132
    assert joined(text) == text


def test_empty_text_is_refused():
    with pytest.raises(ValueError, match="empty"):
        encode("", reference=1)


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("Shop", ("Shop", 5, 0)),
        ("My Shop", ("My Shop", 5, 0)),
        ("+33700000001", ("33700000001", 1, 1)),
        ("33700000001", ("33700000001", 1, 1)),
        ("38100", ("38100", 3, 0)),
    ],
)
def test_sender_ids_get_their_ton_and_npi(sender, expected):
    address = source_address(sender, SmsSettings())
    assert (address.number, address.ton, address.npi) == expected


def test_sender_ton_npi_can_be_forced():
    address = source_address("38100", SmsSettings(source_ton=0, source_npi=1))
    assert (address.ton, address.npi) == (0, 1)


@pytest.mark.parametrize("sender", ["A very long shop name", "shop@example.com", "+12"])
def test_unusable_sender_ids_are_refused(sender):
    with pytest.raises(ValueError, match="sender id"):
        source_address(sender, SmsSettings())


def test_error_classification():
    assert is_temporary(SmppCommandStatus.ESME_RTHROTTLED) and is_temporary(
        SmppCommandStatus.ESME_RSYSERR
    )
    assert is_temporary(0x400)  # vendor-specific: retried within the validity period
    assert not is_temporary(SmppCommandStatus.ESME_RINVDSTADR) and not is_temporary(0x0A)


def body(**changes: object) -> bytes:
    """A deliver_sm body as pdu.receipt_deliver_sm writes it."""
    data = pdu.receipt_deliver_sm(
        1,
        pdu.Receipt(str(changes.get("id", "abc")), str(changes.get("state", "UNDELIV")), "001"),
        pdu.Address("33612345678", 1, 1),
        pdu.Address("Shop", 5, 0),
    )
    return data[pdu.HEADER.size :]


def test_receipt_from_text_and_parameters():
    message = pdu.parse_short_message(body())
    assert message.is_receipt
    assert pdu.parse_receipt(message) == pdu.Receipt("abc", "UNDELIV", "001")


def test_receipt_with_binary_network_error_code_is_read():
    # network_error_code is three binary octets (SMPP 3.4 §5.3.2.31): no ASCII
    tlv = (0x0423).to_bytes(2, "big") + (3).to_bytes(2, "big") + b"\x03\x00\xfe"
    message = pdu.parse_short_message(body() + tlv)
    assert message.tlvs[pdu.TLV_NETWORK_ERROR_CODE] == b"\x03\x00\xfe"
    assert pdu.parse_receipt(message) is not None


def test_malformed_body_is_a_value_error():
    with pytest.raises(ValueError):
        pdu.parse_short_message(b"\x00\x01")


def test_vendor_status_names():
    assert pdu.status_name(0x58) == "ESME_RTHROTTLED (0x58)"
    assert pdu.status_name(0x401) == "command_status 0x00000401"
