"""The bytes of one email: MIME structure per ``emailFormat``, headers and encodings (SPEC §3.7).

This is the hottest code on the sending path, so the message is assembled
directly with the stdlib encoders (``binascii`` quoted-printable, ``base64``)
instead of through ``email.message`` objects, which cost about ten times more
per message.
The result is plain 7-bit ASCII with CRLF line ends: headers are RFC 2047
encoded words where needed, bodies quoted-printable or base64, so no line is
longer than 78 characters (RFC 5322 §2.1.1) except for an unbreakable header
token, and none longer than 998.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import encode_rfc2231, format_datetime, parseaddr

from msgcenter.events.model import EmailFormat

CRLF = "\r\n"
#: the line length that headers are folded to and that encoders stay within (RFC 5322 §2.1.1)
_FOLD = 78
#: control characters would let a value start a new header line (header injection)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
#: longer file names are cut (in characters, and in UTF-8 bytes: RFC 2231 §4 writes a byte
#: as up to three characters, so ``filename*=utf-8''…`` stays within 998, RFC 5322 §2.1.1)
_MAX_FILENAME = 100
_MAX_FILENAME_BYTES = 300
#: RFC 2045 §5.1 ``type "/" subtype`` with token characters only
_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")
#: the charset parameter of a text attachment, the one parameter worth keeping
#: multipart boundaries: a random part drawn once per process, then a counter, all of one
#: length (so that no boundary is the beginning of another, RFC 2046 §5.1.1); a draw
#: from the system's random source per message cost a system call each
_BOUNDARY_PREFIX = "=_" + secrets.token_hex(6)
_boundary_numbers = itertools.count()

_CHARSET = re.compile(r';\s*charset="?([A-Za-z0-9_.:+-]+)"?', re.IGNORECASE)
#: ``Name <local@domain>`` or ``local@domain`` without comments or groups (the common case, parsed fast)
_SIMPLE_ADDRESS = re.compile(
    r'(?P<display>[^<>]*?)\s*<(?P<angle>[^<>\s]+@[^<>\s]+)>|(?P<bare>[^<>\s"(),;:]+@[^<>\s"(),;:]+)'
)
_WORD_START = "=?utf-8?b?"
#: bytes per encoded word: 45 bytes are 60 base64 characters, 72 with the delimiters (RFC 2047 §2: at most 75)
_WORD_BYTES = 45
#: characters that force a quoted display name (RFC 5322 §3.2.3 specials)
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
#: RFC 3834 §5: what a message sent by a program, not in reply to a message, says of itself
AUTO_GENERATED = "auto-generated"
#: RFC 8058 §3.1: the one value of List-Unsubscribe-Post
ONE_CLICK = "List-Unsubscribe=One-Click"
#: a List-Unsubscribe URI as RFC 2369 §2 writes it, ``<uri>``; else bare ones, comma or space apart
_BRACKETED_URI = re.compile(r"<([^<>]*)>")
_BARE_URI_SEPARATOR = re.compile(r"[\s,]+")


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to a message; ``content_type`` may carry parameters (``text/csv; charset=latin-1``)."""

    filename: str
    content_type: str
    data: bytes


def build_message(
    *,
    sender: str,
    recipient: str,
    subject: str,
    message_id: str,
    text: str | None = None,
    html: str | None = None,
    email_format: EmailFormat = EmailFormat.UNKNOWN,
    reply_to: str | None = None,
    attachments: Sequence[Attachment] = (),
    list_unsubscribe: Sequence[str] = (),
    list_unsubscribe_post: bool = False,
    date: datetime | None = None,
    auto_submitted: str | None = AUTO_GENERATED,
    feedback_id: str | None = None,
) -> bytes:
    """The complete message, ready for SMTP ``DATA``.

    ``sender``, ``recipient`` and ``reply_to`` are addresses, optionally with a
    display name (``"Shop <shop@example.com>"``). ``message_id`` is the full
    ``<…@…>`` value (see :func:`~msgcenter.channels.email.identity.message_id`).
    ``list_unsubscribe`` holds URIs (``https:`` or ``mailto:``, RFC 2369);
    ``list_unsubscribe_post`` adds the one-click header of RFC 8058.
    ``auto_submitted`` is the RFC 3834 ``Auto-Submitted`` value (None: no header), so
    that auto-responders do not answer; ``feedback_id`` the ``Feedback-ID`` that
    mailbox providers' feedback loops report per stream (``a:b:c:sender``).
    Raises :class:`ValueError` when an address cannot be used or there is no body.
    """
    lines = [
        "Date: " + format_datetime(date or datetime.now(UTC)),
        _address_header("From", sender),
        _address_header("To", recipient),
    ]
    if reply_to:
        lines.append(_address_header("Reply-To", reply_to))
    lines.append(_unstructured_header("Subject", subject))
    lines.append("Message-ID: " + _clean(message_id))
    lines.append("MIME-Version: 1.0")
    if list_unsubscribe:
        # RFC 2369 §3.2: a comma-separated list of <URI>, folded between entries
        uris = ("<" + _clean(uri).replace(" ", "").strip("<>") + ">" for uri in list_unsubscribe)
        lines.append("List-Unsubscribe: " + ("," + CRLF + " ").join(uris))
        if list_unsubscribe_post:
            lines.append("List-Unsubscribe-Post: " + ONE_CLICK)
    if auto_submitted:
        lines.append(_unstructured_header("Auto-Submitted", auto_submitted))
    if feedback_id:
        lines.append(_unstructured_header("Feedback-ID", feedback_id))
    head = (CRLF.join(lines) + CRLF).encode("ascii")

    body = _body(_select_parts(email_format, text, html))
    if attachments:
        body = _multipart("mixed", [body, *(_attachment(a) for a in attachments)])
    return head + body


def unsubscribe_uris(value: str, *, strict: bool = True) -> list[str]:
    """The URIs of a template's rendered List-Unsubscribe: ``<uri>, <uri>`` as RFC 2369 writes
    them, or bare URIs separated by commas or spaces.

    A URI must be ``https:`` or ``mailto:`` (a plain ``http:`` one-click POST would cross
    the network in clear text, RFC 8058 §3.1), ASCII, without spaces or leftover template
    tags, and only the first ``https:`` URI counts (RFC 8058 §3.1 wants one). ``strict``
    raises :class:`ValueError` for the first unusable URI; otherwise unusable URIs are
    left out (a message is not failed for its List-Unsubscribe).
    """
    value = _clean(value)
    if not value:
        return []
    pieces = _BRACKETED_URI.findall(value) if "<" in value else _BARE_URI_SEPARATOR.split(value)
    uris: list[str] = []
    for uri in (piece.strip() for piece in pieces):
        problem = _unusable(uri, uris)
        if problem is None:
            uris.append(uri)
        elif strict and uri:
            raise ValueError(f"List-Unsubscribe: {uri!r} {problem}")
    return uris


def _unusable(uri: str, kept: list[str]) -> str | None:
    """Why ``uri`` cannot join the List-Unsubscribe URIs ``kept`` so far, or None."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme not in ("https", "mailto"):
        return "is neither an https: nor a mailto: URI"
    if any(c.isspace() for c in uri) or "{{" in uri or "{%" in uri or not uri.isascii():
        return "is not a usable URI"
    if scheme == "https" and any(k.lower().startswith("https:") for k in kept):
        return "is a second https: URI (RFC 8058 wants one)"
    return None


def _select_parts(
    email_format: EmailFormat, text: str | None, html: str | None
) -> list[tuple[str, str]]:
    """The (subtype, content) text parts to send, in order of increasing preference.

    Text only when the recipient asked for it and there is text; otherwise both
    when both exist (RFC 2046 §5.1.4: the last part is the preferred one), else
    whichever exists. Blank content counts as absent.
    """
    has_text, has_html = bool(text and text.strip()), bool(html and html.strip())
    if email_format is EmailFormat.TEXT and has_text:
        has_html = False
    parts: list[tuple[str, str]] = []
    if has_text:
        parts.append(("plain", text or ""))
    if has_html:
        parts.append(("html", html or ""))
    if not parts:
        raise ValueError("a message needs a text or an HTML body")
    return parts


def _body(parts: list[tuple[str, str]]) -> bytes:
    if len(parts) == 1:
        return _text_entity(*parts[0])
    return _multipart("alternative", [_text_entity(subtype, content) for subtype, content in parts])


def _multipart(subtype: str, entities: list[bytes]) -> bytes:
    # "=_" cannot occur in quoted-printable or base64 output, so the boundary
    # never needs checking against the content (RFC 2046 §5.1.1).
    boundary = f"{_BOUNDARY_PREFIX}{next(_boundary_numbers) & 0xFFFF_FFFF_FFFF:012x}"
    delimiter = f"{CRLF}--{boundary}{CRLF}".encode("ascii")
    return b"".join(
        (
            f'Content-Type: multipart/{subtype}; boundary="{boundary}"{CRLF}{CRLF}'
            f"--{boundary}{CRLF}".encode("ascii"),
            delimiter.join(entities),
            f"{CRLF}--{boundary}--{CRLF}".encode("ascii"),
        )
    )


def _text_entity(subtype: str, content: str) -> bytes:
    """A UTF-8 text entity: quoted-printable while it stays readable, base64 when mostly non-Latin."""
    normalized = content.replace("\r\n", "\n").replace("\r", "\n")
    encoded = normalized.encode("utf-8")
    if len(encoded) - len(normalized) > len(normalized) // 3:
        transfer = "base64"
        # RFC 2046 §4.1.1: the canonical form of text has CRLF line breaks
        data = _base64_lines(encoded.replace(b"\n", b"\r\n"))
    else:
        transfer = "quoted-printable"
        # RFC 2045 §6.7: b2a_qp keeps line breaks, wraps at 76 with soft breaks, escapes trailing space
        data = binascii.b2a_qp(encoded, istext=True).replace(b"\n", b"\r\n")
    return (
        f"Content-Type: text/{subtype}; charset=utf-8{CRLF}"
        f"Content-Transfer-Encoding: {transfer}{CRLF}{CRLF}"
    ).encode("ascii") + data


def _attachment(attachment: Attachment) -> bytes:
    media_type = attachment.content_type.split(";", 1)[0].strip().lower()
    if not _MEDIA_TYPE.fullmatch(media_type):
        media_type = "application/octet-stream"
    charset = _CHARSET.search(attachment.content_type)
    if charset and media_type.startswith("text/"):
        media_type += f"; charset={charset[1]}"
    filename = _filename(attachment.filename)
    if filename.isascii():
        quoted = filename.replace('"', "'")
        name_param, filename_param = f'name="{quoted}"', f'filename="{quoted}"'
    else:
        # RFC 2231 §4 for the disposition; RFC 2047 in ``name`` for clients that predate it
        name_param = f'name="{_encoded_words(filename, len("name=") + 2)}"'
        filename_param = "filename*=" + encode_rfc2231(filename, "utf-8")
    return (
        f"Content-Type: {media_type};{CRLF} {name_param}{CRLF}"
        f"Content-Disposition: attachment;{CRLF} {filename_param}{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}{CRLF}"
    ).encode("ascii") + _base64_lines(attachment.data)


def _filename(name: str) -> str:
    """The last path segment, one line, at most ``_MAX_FILENAME`` characters and
    ``_MAX_FILENAME_BYTES`` UTF-8 bytes, with its extension kept."""
    name = _clean(name.replace("\\", "/").rsplit("/", 1)[-1]) or "attachment"
    if len(name) <= _MAX_FILENAME and len(name.encode("utf-8")) <= _MAX_FILENAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or len(extension) > 10:
        return _cut(name, _MAX_FILENAME, _MAX_FILENAME_BYTES)
    suffix = "." + extension
    room = _MAX_FILENAME_BYTES - len(suffix.encode("utf-8"))
    return _cut(stem, _MAX_FILENAME - len(suffix), room) + suffix


def _cut(text: str, characters: int, size: int) -> str:
    """The start of ``text``: at most ``characters`` characters and ``size`` UTF-8 bytes."""
    # a cut inside a character leaves a partial sequence, which "ignore" drops
    return text[:characters].encode("utf-8")[:size].decode("utf-8", "ignore")


def _base64_lines(data: bytes) -> bytes:
    """Base64 in lines of 76 characters (RFC 2045 §6.8), CRLF-separated, no final line break."""
    encoded = base64.b64encode(data)
    return b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


def _clean(value: str) -> str:
    """One line of header text: control characters (CR and LF among them) become a space."""
    return _CONTROL.sub(" ", value).strip()


def _unstructured_header(name: str, value: str) -> str:
    """``Name: value``, folded at spaces, or as RFC 2047 encoded words when not plain ASCII."""
    value = _clean(value)
    prefix = f"{name}: "
    if len(prefix) + len(value) <= _FOLD and _plain(value):
        return prefix + value
    if _plain(value) and max(map(len, value.split(" "))) < _FOLD - len(prefix):
        return prefix + _fold(value, len(prefix))
    return prefix + _encoded_words(value, len(prefix))


def _address_header(name: str, value: str) -> str:
    """``Name: Display Name <local@domain>``; a non-ASCII display name as RFC 2047 encoded words."""
    display, address = _split_address(_clean(value))
    if "@" not in address:
        raise ValueError(f"{name}: not an email address: {value!r}")
    if not address.isascii():
        raise ValueError(f"{name}: non-ASCII address needs SMTPUTF8, not supported: {value!r}")
    prefix = f"{name}: "
    if not display:
        return prefix + address
    if not _plain(display):
        encoded = _encoded_words(display, len(prefix))
        last_line = (
            len(prefix) + len(encoded) if CRLF not in encoded else len(encoded.rsplit(CRLF, 1)[1])
        )
        separator = " " if last_line + len(address) + 3 <= _FOLD else CRLF + " "
        return f"{prefix}{encoded}{separator}<{address}>"
    if _SPECIALS.search(display):
        display = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{prefix}{display} <{address}>"


def _split_address(value: str) -> tuple[str, str]:
    """(display name, address) of ``Name <addr>`` or ``addr``; the stdlib parser for anything else."""
    match = _SIMPLE_ADDRESS.fullmatch(value)
    if match is None:
        return parseaddr(value)
    if match["bare"]:
        return "", match["bare"]
    display = match["display"]
    if len(display) > 1 and display[0] == display[-1] == '"':
        display = re.sub(r"\\(.)", r"\1", display[1:-1])
    return display, match["angle"]


def _plain(value: str) -> bool:
    """Whether text can go into a header as is (a literal "=?" would read as an encoded word)."""
    return value.isascii() and "=?" not in value


def _fold(value: str, used: int) -> str:
    """ASCII text folded at spaces so that lines stay within 78 characters (RFC 5322 §2.2.3)."""
    lines, line = [], ""
    for word in value.split(" "):
        if line and used + len(line) + 1 + len(word) > _FOLD:
            lines.append(line)
            line, used = word, 1
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return (CRLF + " ").join(lines)


def _encoded_words(value: str, used: int) -> str:
    """UTF-8 ``B`` encoded words (RFC 2047 §4.1) of at most 75 characters, one per folded line.

    A word never splits a character (RFC 2047 §5): a cut that falls on a UTF-8
    continuation byte moves back to the start of its character.
    """
    data = value.encode("utf-8")
    words, start = [], 0
    room = (_FOLD - used - len(_WORD_START) - 2) // 4 * 3  # bytes that fit in the first line
    while start < len(data):
        end = min(start + room, len(data))
        while end < len(data) and 0x80 <= data[end] < 0xC0:
            end -= 1
        words.append(_WORD_START + base64.b64encode(data[start:end]).decode("ascii") + "?=")
        start, room = end, _WORD_BYTES
    return (CRLF + " ").join(words)
