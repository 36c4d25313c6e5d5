"""SMS text encoding: GSM 03.38 when the text fits it, UCS-2 otherwise, long texts split into
concatenated parts with a User Data Header (3GPP TS 23.038 §6.2.1, TS 23.040 §9.2.3.24.1).

GSM 03.38 is aiosmpplib's codec (``aiosmpplib.codec.GSM7BitCodec``: the basic set and its
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
from collections.abc import Callable
from dataclasses import dataclass

from aiosmpplib.codec import ESCAPE, GSM7BitCodec

#: GSM 03.38 unpacked, one septet per octet; an extension character is ESCAPE and its code
#: (TS 23.038 §6.2.1.1). Raises UnicodeEncodeError for a character outside both tables.
GSM = GSM7BitCodec()
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


def _cut(
    data: bytes, single: int, limit: int, overhang: Callable[[bytes, int], int]
) -> list[bytes]:
    """``data`` whole when it fits ``single`` octets, else cut in parts of ``limit`` octets at
    most; ``overhang(data, end)`` is how many octets before ``end`` start a character that a
    cut at ``end`` would split (it goes to the next part)."""
    if len(data) <= single:
        return [data]
    parts: list[bytes] = []
    start = 0
    while len(data) - start > limit:
        end = start + limit
        end -= overhang(data, end)
        parts.append(data[start:end])
        start = end
    parts.append(data[start:])
    return parts


def _gsm_overhang(data: bytes, end: int) -> int:
    """1 when the part would end with an ESC: it stays with its character."""
    return 1 if data[end - 1] == ESCAPE else 0


def _ucs2_overhang(data: bytes, end: int) -> int:
    """2 when the part would end with the high half of a surrogate pair (D800-DBFF)."""
    return 2 if 0xD8 <= data[end - 2] <= 0xDB else 0


def split(text: str) -> tuple[DataCoding, list[bytes]]:
    """The coding of ``text`` and its parts' user data, without UDH."""
    try:
        septets = GSM.encode(text)[0]
    except UnicodeEncodeError:
        octets = text.encode("utf-16-be")
        return DataCoding.UCS2, _cut(octets, SINGLE_UCS2_OCTETS, PART_UCS2_OCTETS, _ucs2_overhang)
    return DataCoding.GSM, _cut(septets, SINGLE_GSM_SEPTETS, PART_GSM_SEPTETS, _gsm_overhang)


def count_parts(text: str) -> int:
    """How many short messages ``text`` is sent as."""
    return len(split(text)[1])


def udh(reference: int, total: int, sequence: int) -> bytes:
    """A UDH with one concatenation IE, 8-bit reference (TS 23.040 §9.2.3.24.1)."""
    return bytes((0x05, 0x00, 0x03, reference & 0xFF, total, sequence))


class TooManyParts(ValueError):
    """The text needs more parts than allowed."""

    def __init__(self, parts: int, limit: int) -> None:
        super().__init__(f"the SMS text needs {parts} parts, more than {limit}")
        self.parts = parts


def encode(text: str, reference: int, *, max_parts: int = MAX_PARTS) -> EncodedSms:
    """Encode ``text`` for ``submit_sm``; a text of several parts gets UDHs numbered from 1,
    all with ``reference`` (its low octet). Raises ValueError for an empty text, and
    :class:`TooManyParts` for one of more than ``max_parts`` parts (:data:`MAX_PARTS` at most)."""
    if not text:
        raise ValueError("the SMS text is empty")
    coding, chunks = split(text)
    total = len(chunks)
    if total > min(max_parts, MAX_PARTS):
        raise TooManyParts(total, min(max_parts, MAX_PARTS))
    if total == 1:
        return EncodedSms(coding, chunks)
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
        text = GSM.decode(body, "replace")[0]
    return DecodedPart(text, reference, total, sequence)
