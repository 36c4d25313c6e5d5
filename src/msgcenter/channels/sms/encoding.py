"""SMS text encoding: GSM 03.38 when the text fits it, UCS-2 otherwise, long texts split into
concatenated parts with a User Data Header (3GPP TS 23.038 §6.2.1, TS 23.040 §9.2.3.24.1).

The GSM 03.38 character tables are aiosmpplib's (``aiosmpplib.codec``: the basic set and its
escape-extension table, the same as the ``gsm0338`` package's). Its splitting helpers are not
used: they count characters, not septets, so a text with extension characters (``€ { } [ ]
~ \\ | ^``, two septets each) would give parts over 153 septets; the splitting here counts
septets and never separates an escape from the character it introduces, nor the two halves of
a UTF-16 surrogate pair.

Septets are sent unpacked, one per octet, with ``data_coding`` 0 (the SMSC's default alphabet),
as nearly every SMSC expects over SMPP (SMPP 3.4 §5.2.19).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aiosmpplib.codec import GSM_BASIC_ENCODE_MAP, GSM_EXTENDED_ENCODE_MAP, GSM7BitCodec

#: ESC, the septet before a character of the extension table (TS 23.038 §6.2.1.1)
ESCAPE = 0x1B
#: one short message carries 140 octets of user data on the air (TS 23.040 §9.2.3.24): 160
#: septets once the SMSC packs them, or 140 octets of UCS-2
SINGLE_GSM_SEPTETS = 160
SINGLE_UCS2_OCTETS = 140
#: with a 6-octet UDH (its length octet and one 8-bit concatenation IE, §9.2.3.24.1):
#: (140 - 6) * 8 // 7 = 153 septets (the UDH padded to a septet boundary), 134 octets of UCS-2
PART_GSM_SEPTETS = 153
PART_UCS2_OCTETS = 134
#: the largest number of parts a concatenated message can have (the IE's octet)
MAX_PARTS = 255


class DataCoding(enum.IntEnum):
    """``data_coding`` values used (SMPP 3.4 §5.2.19)."""

    #: the SMSC's default alphabet: GSM 03.38, unpacked
    GSM = 0x00
    #: UCS-2 (UTF-16 big-endian; characters outside the BMP take a surrogate pair)
    UCS2 = 0x08


@dataclass(frozen=True, slots=True)
class EncodedSms:
    """One text ready for ``submit_sm``: its coding and the ``short_message`` of each part."""

    data_coding: DataCoding
    #: one part without UDH, or several parts each starting with its UDH
    parts: list[bytes]

    @property
    def concatenated(self) -> bool:
        """Whether the parts carry a UDH (``esm_class`` UDHI bit, SMPP 3.4 §5.2.12)."""
        return len(self.parts) > 1


def _gsm_septets(text: str) -> list[bytes] | None:
    """Each character's septets (one, or ESC and one), or None when one is not in GSM 03.38."""
    units: list[bytes] = []
    basic, extended = GSM_BASIC_ENCODE_MAP, GSM_EXTENDED_ENCODE_MAP
    for char in text:
        code = basic.get(char)
        if code is not None:
            units.append(bytes((code,)))
            continue
        code = extended.get(char)
        if code is None:
            return None
        units.append(bytes((ESCAPE, code)))
    return units


def _ucs2_units(text: str) -> list[bytes]:
    """Each character in UTF-16BE: two octets, or four for a surrogate pair."""
    return [char.encode("utf-16-be") for char in text]


def _chunks(units: list[bytes], limit: int) -> list[bytes]:
    """Join ``units`` into chunks of at most ``limit`` octets, never splitting a unit."""
    chunks: list[bytes] = []
    current = bytearray()
    for unit in units:
        if len(current) + len(unit) > limit:
            chunks.append(bytes(current))
            current = bytearray()
        current += unit
    chunks.append(bytes(current))
    return chunks


def split(text: str) -> tuple[DataCoding, list[bytes]]:
    """The coding of ``text`` and its parts' user data, without UDH."""
    septets = _gsm_septets(text)
    if septets is not None:
        if sum(len(unit) for unit in septets) <= SINGLE_GSM_SEPTETS:
            return DataCoding.GSM, [b"".join(septets)]
        return DataCoding.GSM, _chunks(septets, PART_GSM_SEPTETS)
    units = _ucs2_units(text)
    if sum(len(unit) for unit in units) <= SINGLE_UCS2_OCTETS:
        return DataCoding.UCS2, [b"".join(units)]
    return DataCoding.UCS2, _chunks(units, PART_UCS2_OCTETS)


def count_parts(text: str) -> int:
    """How many short messages ``text`` is sent as."""
    return len(split(text)[1])


def udh(reference: int, total: int, sequence: int) -> bytes:
    """A UDH with one concatenation IE, 8-bit reference (TS 23.040 §9.2.3.24.1)."""
    return bytes((0x05, 0x00, 0x03, reference & 0xFF, total, sequence))


def encode(text: str, reference: int) -> EncodedSms:
    """Encode ``text`` for ``submit_sm``; a text of several parts gets UDHs numbered from 1,
    all with ``reference`` (its low octet). Raises ValueError for an empty text or one of more
    than :data:`MAX_PARTS` parts."""
    if not text:
        raise ValueError("the SMS text is empty")
    coding, chunks = split(text)
    if len(chunks) == 1:
        return EncodedSms(coding, chunks)
    if len(chunks) > MAX_PARTS:
        raise ValueError(f"the SMS text needs {len(chunks)} parts, more than {MAX_PARTS}")
    total = len(chunks)
    return EncodedSms(
        coding, [udh(reference, total, i) + chunk for i, chunk in enumerate(chunks, start=1)]
    )


@dataclass(frozen=True, slots=True)
class DecodedPart:
    """One received short message: its text and, when it is a part, its place in the whole."""

    text: str
    reference: int | None = None
    total: int = 1
    sequence: int = 1


def decode(short_message: bytes, data_coding: int, *, udhi: bool) -> DecodedPart:
    """Decode one ``short_message`` (an SMSC simulator's view): UDH read when ``udhi``.

    Octets that do not decode are replaced, never raised: this reads what a client sent.
    """
    reference: int | None = None
    total = sequence = 1
    body = short_message
    if udhi and short_message:
        length = short_message[0]
        header, body = short_message[1 : 1 + length], short_message[1 + length :]
        position = 0
        while position + 2 <= len(header):
            element, size = header[position], header[position + 1]
            value = header[position + 2 : position + 2 + size]
            if element == 0x00 and size == 3:  # 8-bit reference
                reference, total, sequence = value[0], value[1], value[2]
            elif element == 0x08 and size == 4:  # 16-bit reference
                reference, total, sequence = (value[0] << 8) | value[1], value[2], value[3]
            position += 2 + size
    if data_coding == DataCoding.UCS2:
        text = body.decode("utf-16-be", errors="replace")
    elif data_coding in (0x01, 0x03):  # IA5/ASCII, Latin-1
        text = body.decode("latin-1")
    else:
        text = GSM7BitCodec().decode(body, "replace")[0]
    return DecodedPart(text, reference, total, sequence)
