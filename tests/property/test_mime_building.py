"""MIME building (SPEC §3.7), by property: whatever the subject, names, bodies and
attachments, the message is 7-bit CRLF text within the line limits, the stdlib parser
reads back exactly what was given, and no value can add a header or a part."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesParser
from email.utils import parseaddr, parsedate_to_datetime

from hypothesis import given
from hypothesis import strategies as st

from msgcenter.channels.email.mime import Attachment, build_message
from msgcenter.events.model import EmailFormat

#: any text, with a bias towards what headers and encodings treat specially
text = st.lists(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(list(' \t\r\n\x00\x7f"\\()<>@,;:.[]=?_') + ["=?", "?=", "\r\n "]),
        st.text(st.sampled_from("ab "), min_size=20, max_size=90),
    ),
    max_size=40,
).map("".join)
local = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,10}", fullmatch=True).filter(
    lambda s: ".." not in s and not s.endswith(".")
)
domain = st.from_regex(r"[a-z][a-z0-9-]{0,8}\.(?:example|com|fr)", fullmatch=True)
addresses = st.builds("{}@{}".format, local, domain)
CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def cleaned(value: str) -> str:
    """A header value as one line: control characters (CR, LF among them) read as a space."""
    return CONTROL.sub(" ", value).strip()


def words(value: str) -> list[str]:
    return value.split()


def quoted(display: str, address: str) -> str:
    """``"Display" <address>`` with the display name as an RFC 5322 quoted string."""
    escaped = display.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" <{address}>'


def normalized(body: str) -> str:
    return body.replace("\r\n", "\n").replace("\r", "\n")


attachments = st.lists(
    st.builds(
        Attachment,
        st.one_of(
            text, st.sampled_from(["../../etc/passwd", "C:\\x\\report.pdf", "a" * 150 + ".csv"])
        ),
        st.sampled_from(
            [
                "application/pdf",
                "text/csv; charset=latin-1",
                "image/png",
                "bad type",
                "",
                "TEXT/Plain",
            ]
        ),
        st.binary(max_size=300),
    ),
    max_size=3,
)


def parse(data: bytes):
    return BytesParser(policy=policy.default).parsebytes(data)


def display_name(data: bytes, header: str) -> str:
    """The display name of an address header, decoded per RFC 2047 §6.2.

    CPython's address parser (``policy.default``) keeps the folding space between two
    adjacent encoded words of a phrase, which §6.2 says to drop; ``decode_header``
    drops it, so a long non-ASCII name is read with it.
    """
    raw = BytesParser(policy=policy.compat32).parsebytes(data, headersonly=True)[header]
    if raw.startswith("=?"):
        return str(make_header(decode_header(raw))).rsplit(" <", 1)[0]
    return parseaddr(raw)[0]


@given(
    subject=text,
    sender_name=text,
    sender=addresses,
    recipient=addresses,
    plain=st.one_of(st.none(), text),
    html=st.one_of(st.none(), text),
    email_format=st.sampled_from(list(EmailFormat)),
    files=attachments,
)
def test_the_stdlib_reads_back_what_was_built(
    subject, sender_name, sender, recipient, plain, html, email_format, files
):
    has_text, has_html = bool(plain and plain.strip()), bool(html and html.strip())
    try:
        data = build_message(
            sender=quoted(sender_name, sender),
            recipient=recipient,
            subject=subject,
            message_id="<dl-1@example.com>",
            text=plain,
            html=html,
            email_format=email_format,
            attachments=files,
            date=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        )
    except ValueError:
        assert not has_text and not has_html
        return

    # 7-bit, CRLF only, lines within RFC 5322 §2.1.1 (78 but for unbreakable tokens, 998)
    assert data.isascii()
    lines = data.split(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert all(len(line) <= 998 for line in lines)
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in data[len(head) :].split(b"\r\n"):
        # only an attachment's name, one unbreakable token, may make a longer line
        assert len(line) <= 78 or line.startswith((b" name=", b" filename")), line

    message = parse(data)
    assert not message.defects
    single = (has_text != has_html or email_format is EmailFormat.TEXT and has_text) and not files
    assert list(message.keys()) == [
        "Date", "From", "To", "Subject", "Message-ID", "MIME-Version", "Auto-Submitted",
        "Content-Type",
    ] + ["Content-Transfer-Encoding"] * single  # fmt: skip
    assert str(message["Subject"]) == cleaned(subject)
    (author,) = message["From"].addresses
    assert author.addr_spec == sender
    assert words(display_name(data, "From")) == words(cleaned(sender_name))
    assert message["To"].addresses[0].addr_spec == recipient
    assert parsedate_to_datetime(message["Date"]) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    if email_format is EmailFormat.TEXT and has_text:
        has_html = False
    bodies = [("plain", plain)] * has_text + [("html", html)] * has_html
    leaves = [part for part in message.walk() if not part.is_multipart()]
    for part in leaves:
        assert not part.defects
    parts, files_back = leaves[: len(bodies)], leaves[len(bodies) :]
    assert [p.get_content_subtype() for p in parts] == [subtype for subtype, _ in bodies]
    for part, (_, content) in zip(parts, bodies, strict=True):
        assert normalized(part.get_content()) == normalized(content)
        assert part.get_content_disposition() is None
    assert len(files_back) == len(files)
    for part, attachment in zip(files_back, files, strict=True):
        assert part.get_content_disposition() == "attachment"
        assert part.get_payload(decode=True) == attachment.data
        name = part.get_filename()
        assert name and len(name) <= 100 and len(name.encode()) <= 300
        assert not CONTROL.search(name)
        assert "/" not in name and "\\" not in name
        last = cleaned(attachment.filename.replace("\\", "/").rsplit("/", 1)[-1])
        if last and len(last) <= 100 and len(last.encode()) <= 300:
            assert name == (last.replace('"', "'") if last.isascii() else last)


@given(text, addresses)
def test_a_display_name_of_any_kind_reads_back(display, address):
    data = build_message(
        sender=quoted(display, address),
        recipient=quoted(display, address),
        subject="s",
        message_id="<m@example.com>",
        text="t",
    )
    message = parse(data)
    for header in ("From", "To"):
        (mailbox,) = message[header].addresses
        assert mailbox.addr_spec == address
        assert words(display_name(data, header)) == words(cleaned(display))
