"""SMPP 3.4 PDUs: outbound ones built with aiosmpplib's codec, inbound ones read here.

Outbound PDUs (``bind_transceiver``, ``submit_sm``, ``enquire_link``, ``deliver_sm`` of the
simulator…) are aiosmpplib's ``protocol`` classes. Inbound ones are decoded by the small,
tolerant reader below rather than by aiosmpplib's ``from_pdu``: that one raises on a
``command_status`` its enum does not know (SMSCs use vendor codes 0x400-0x4FF, SMPP 3.4
§5.1.3), on an optional parameter whose octets are not ASCII (``network_error_code`` is three
binary octets, §5.3.2.31) and on a GSM text with an unmapped octet, and a receipt that cannot
be read must still be acknowledged and counted, never crash the session.
"""

from __future__ import annotations

import asyncio
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from aiosmpplib import (
    NPI,
    TON,
    BindTransceiver,
    BindTransceiverResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    OptionalParam,
    PhoneNumber,
    SmppCommand,
    SmppCommandStatus,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)

from msgcenter.channels.sms.encoding import DataCoding

#: the header every PDU starts with: length, command_id, command_status, sequence (§3.2)
HEADER = struct.Struct("!IIII")
#: longest PDU read: a 64 KiB message_payload and the rest (a longer one is a broken stream)
MAX_PDU_OCTETS = 70_000

#: optional parameter tags (SMPP 3.4 §5.3.2)
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_NETWORK_ERROR_CODE = 0x0423
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_MESSAGE_STATE = 0x0427

#: esm_class bits (§5.2.12): a delivery receipt, and a UDH in short_message
ESM_RECEIPT = 0x04
ESM_UDHI = 0x40
ESM_TYPE_MASK = 0x3C


#: the bit of a response's command_id (§5.1.2)
RESPONSE = 0x80000000


def status_name(status: int) -> str:
    """``ESME_RTHROTTLED (0x58)``, or the number alone for a vendor-specific code."""
    try:
        return f"{SmppCommandStatus(status).name} (0x{status:02X})"
    except ValueError:
        return f"command_status 0x{status:08X}"


@dataclass(frozen=True, slots=True)
class Pdu:
    """One PDU read from the stream: its header and its body."""

    command_id: int
    status: int
    sequence: int
    body: bytes


class ProtocolError(Exception):
    """The peer sent something that is not SMPP: the session cannot go on."""


async def read_pdu(reader: asyncio.StreamReader) -> Pdu:
    """Read one whole PDU; raises IncompleteReadError at end of stream, ProtocolError on garbage."""
    header = await reader.readexactly(HEADER.size)
    length, command_id, status, sequence = HEADER.unpack(header)
    if not HEADER.size <= length <= MAX_PDU_OCTETS:
        raise ProtocolError(f"PDU length {length} out of bounds")
    body = await reader.readexactly(length - HEADER.size) if length > HEADER.size else b""
    return Pdu(command_id, status, sequence, body)


def header_only(
    command: SmppCommand, sequence: int, status: int = SmppCommandStatus.ESME_ROK
) -> bytes:
    """A PDU without body (generic_nack, a refused submit_sm_resp)."""
    return HEADER.pack(HEADER.size, command, status, sequence)


def with_sequence(octets: bytes, sequence: int) -> bytes:
    """The PDU ``octets`` with its sequence_number set to ``sequence`` (a built PDU sent again,
    or on another bind, needs no new encoding)."""
    return octets[:12] + sequence.to_bytes(4, "big") + octets[HEADER.size :]


class _Reader:
    """Reads the fields of a PDU body in order (§3.1 data types)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def c_string(self) -> str:
        end = self.data.index(b"\x00", self.at)
        value = self.data[self.at : end].decode("latin-1")
        self.at = end + 1
        return value

    def octet(self) -> int:
        value = self.data[self.at]
        self.at += 1
        return value

    def octets(self, count: int) -> bytes:
        value = self.data[self.at : self.at + count]
        if len(value) != count:
            raise ValueError("body ends inside a field")
        self.at += count
        return value

    def tlvs(self) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        while self.at + 4 <= len(self.data):
            tag, size = struct.unpack_from("!HH", self.data, self.at)
            self.at += 4
            found[tag] = self.octets(size)
        return found


@dataclass(frozen=True, slots=True)
class ShortMessage:
    """The body of a ``submit_sm`` or a ``deliver_sm`` (the same fields, §4.4.1 and §4.6.1)."""

    service_type: str
    source_addr: str
    source_ton: int
    source_npi: int
    destination_addr: str
    dest_ton: int
    dest_npi: int
    esm_class: int
    registered_delivery: int
    data_coding: int
    #: short_message, or the message_payload parameter when short_message is empty
    message: bytes
    tlvs: dict[int, bytes] = field(default_factory=dict)

    @property
    def is_receipt(self) -> bool:
        """Whether this deliver_sm is an SMSC delivery receipt (esm_class xx0001xx)."""
        return self.esm_class & ESM_TYPE_MASK == ESM_RECEIPT

    @property
    def udhi(self) -> bool:
        return bool(self.esm_class & ESM_UDHI)


def parse_short_message(body: bytes) -> ShortMessage:
    """Read a submit_sm or deliver_sm body; raises ValueError when it is malformed."""
    try:
        read = _Reader(body)
        service_type = read.c_string()
        source_ton, source_npi = read.octet(), read.octet()
        source_addr = read.c_string()
        dest_ton, dest_npi = read.octet(), read.octet()
        destination_addr = read.c_string()
        esm_class = read.octet()
        read.octet()  # protocol_id
        read.octet()  # priority_flag
        read.c_string()  # schedule_delivery_time
        read.c_string()  # validity_period
        registered_delivery = read.octet()
        read.octet()  # replace_if_present_flag
        data_coding = read.octet()
        read.octet()  # sm_default_msg_id
        message = read.octets(read.octet())
        tlvs = read.tlvs()
    except (IndexError, struct.error) as exc:
        raise ValueError(f"malformed short message body: {exc}") from exc
    if not message and TLV_MESSAGE_PAYLOAD in tlvs:
        message = tlvs[TLV_MESSAGE_PAYLOAD]
    return ShortMessage(
        service_type,
        source_addr,
        source_ton,
        source_npi,
        destination_addr,
        dest_ton,
        dest_npi,
        esm_class,
        registered_delivery,
        data_coding,
        message,
        tlvs,
    )


def parse_c_string(body: bytes) -> str:
    """The first C-octet string of a body (submit_sm_resp's message_id, a bind's system_id)."""
    end = body.find(b"\x00")
    return body[: end if end >= 0 else len(body)].decode("latin-1")


# -- delivery receipts -----------------------------------------------------------------

#: message_state values of the receipt parameter (§5.3.2.35) by their receipt-text name
MESSAGE_STATES = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
#: the receipt text's fields, in the format of SMPP 3.4 Appendix B
RECEIPT_FIELD = re.compile(r"(?i)\b(id|stat|err):(\S*)")


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a delivery receipt says of one submitted message."""

    #: the SMSC's id of the message, as submit_sm_resp gave it
    message_id: str
    #: DELIVRD, UNDELIV, EXPIRED, REJECTD, DELETED, ACCEPTD, ENROUTE, UNKNOWN
    state: str
    #: the network- or SMSC-specific error code ("000" when none)
    error: str


def parse_receipt(message: ShortMessage) -> Receipt | None:
    """The receipt a deliver_sm carries, or None when it names no message.

    The ``receipted_message_id`` and ``message_state`` parameters win over the text (they are
    the standard form, §5.3.2.12); the text's ``id:``, ``stat:`` and ``err:`` fill the rest.
    """
    fields: dict[str, str] = {}
    text = message.message.decode("latin-1")
    for name, value in RECEIPT_FIELD.findall(text):
        fields.setdefault(name.lower(), value)
    message_id = fields.get("id", "")
    raw_id = message.tlvs.get(TLV_RECEIPTED_MESSAGE_ID)
    if raw_id:
        message_id = raw_id.rstrip(b"\x00").decode("latin-1")
    state = fields.get("stat", "").upper()
    raw_state = message.tlvs.get(TLV_MESSAGE_STATE)
    if raw_state and raw_state[0] in MESSAGE_STATES:
        state = MESSAGE_STATES[raw_state[0]]
    error = fields.get("err", "")
    raw_error = message.tlvs.get(TLV_NETWORK_ERROR_CODE)
    if not error and raw_error is not None and len(raw_error) == 3:
        error = str(int.from_bytes(raw_error[1:], "big"))
    if not message_id:
        return None
    return Receipt(message_id, state or "UNKNOWN", error or "000")


# -- outbound PDUs, through aiosmpplib's codec ------------------------------------------


def _octets(message: Any) -> bytes:
    """The wire form of one of aiosmpplib's messages."""
    data: bytes = message.pdu()
    return data


def bind_transceiver(sequence: int, system_id: str, password: str, system_type: str) -> bytes:
    """bind_transceiver (§4.1.5), interface version 3.4."""
    return _octets(
        BindTransceiver(
            sequence_num=sequence, system_id=system_id, password=password, system_type=system_type
        )
    )


@dataclass(frozen=True, slots=True)
class Address:
    """An SMPP address with its type of number and numbering plan (§5.2.5, §5.2.6: the
    values of :class:`TON` and :class:`NPI`)."""

    number: str
    ton: int
    npi: int


def submit_sm(
    sequence: int,
    source: Address,
    destination: Address,
    message: bytes,
    data_coding: DataCoding,
    *,
    udhi: bool,
    registered_delivery: int,
    service_type: str = "",
) -> bytes:
    """submit_sm (§4.4.1) carrying ``message`` as already encoded (with its UDH when ``udhi``)."""
    pdu = SubmitSm(
        sequence_num=sequence,
        short_message="-",  # replaced below by the encoded octets; aiosmpplib wants text
        source=PhoneNumber(source.number, TON(source.ton), NPI(source.npi)),
        destination=PhoneNumber(destination.number, TON(destination.ton), NPI(destination.npi)),
        service_type=service_type,
        esm_class=ESM_UDHI if udhi else 0,
        registered_delivery=registered_delivery,
        encoding="ucs2" if data_coding is DataCoding.UCS2 else None,
        auto_message_payload=False,
    )
    pdu.set_encoded_message(message)
    return _octets(pdu)


def deliver_sm_resp(sequence: int) -> bytes:
    """deliver_sm_resp (§4.6.2), accepting: its message_id is unused and empty."""
    return _octets(DeliverSmResp(sequence_num=sequence))


def enquire_link(sequence: int) -> bytes:
    return _octets(EnquireLink(sequence_num=sequence))


def enquire_link_resp(sequence: int) -> bytes:
    return _octets(EnquireLinkResp(sequence_num=sequence))


def unbind(sequence: int) -> bytes:
    return _octets(Unbind(sequence_num=sequence))


def unbind_resp(sequence: int) -> bytes:
    return _octets(UnbindResp(sequence_num=sequence))


def generic_nack(sequence: int, status: int) -> bytes:
    """generic_nack (§4.3) for a PDU that could not be handled."""
    return header_only(SmppCommand.GENERIC_NACK, sequence, status)


# -- what an SMSC sends (the simulator) -------------------------------------------------


def bind_resp(
    command: int, sequence: int, system_id: str, status: int = SmppCommandStatus.ESME_ROK
) -> bytes:
    """The response to a bind request of ``command`` (§4.1)."""
    body = _octets(BindTransceiverResp(sequence_num=sequence, system_id=system_id))[HEADER.size :]
    return HEADER.pack(HEADER.size + len(body), command | RESPONSE, status, sequence) + body


def submit_sm_resp(
    sequence: int, message_id: str, status: int = SmppCommandStatus.ESME_ROK
) -> bytes:
    """submit_sm_resp (§4.4.2); a refused submit carries no message_id."""
    if status != SmppCommandStatus.ESME_ROK:
        return header_only(SmppCommand.SUBMIT_SM_RESP, sequence, status)
    return _octets(SubmitSmResp(sequence_num=sequence, message_id=message_id))


def receipt_deliver_sm(
    sequence: int, receipt: Receipt, source: Address, destination: Address
) -> bytes:
    """A delivery receipt (§4.6.1, Appendix B text plus the §5.3.2 parameters), from
    ``source`` (the recipient) to ``destination`` (the sender)."""
    state = next((k for k, v in MESSAGE_STATES.items() if v == receipt.state), 7)
    text = DeliverSm.encode_receipt(
        {
            "id": receipt.message_id,
            "sub": 1,
            "dlvrd": int(state == 2),
            "stat": receipt.state,
            "err": int(receipt.error) if receipt.error.isdigit() else 0,
        }
    )
    return _octets(
        DeliverSm(
            sequence_num=sequence,
            short_message=text,
            source=PhoneNumber(source.number, TON(source.ton), NPI(source.npi)),
            destination=PhoneNumber(destination.number, TON(destination.ton), NPI(destination.npi)),
            esm_class=ESM_RECEIPT,
            registered_delivery=0,
            optional_params=[
                OptionalParam(TLV_RECEIPTED_MESSAGE_ID, receipt.message_id),
                OptionalParam(TLV_MESSAGE_STATE, state),
            ],
        )
    )
