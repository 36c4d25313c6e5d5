"""Reading mail sent back to bounce addresses: RFC 3464 delivery-status reports, the
non-standard bounces flufl.bounce recognises, ARF complaints (RFC 5965), and malformed or
hostile mail, which is never an exception."""

from __future__ import annotations

import pytest

from msgcenter.bounces import ReportKind
from msgcenter.channels.email.reports import read_report

VERP = "bounce+dl-42-0123abcd@bounces.example.com"


def dsn(*recipients: str, report_type: str = "delivery-status", part: str = "") -> bytes:
    """A multipart/report DSN with one block of per-recipient fields per item."""
    blocks = "\n".join(f"\n{block.strip()}" for block in recipients)
    status_part = part or (
        "Content-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.net\n"
        "Arrival-Date: Mon, 7 Dec 2026 07:00:00 +0000\n"
        f"{blocks}\n"
    )
    return (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n"
        f"To: {VERP}\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type={report_type}; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nI'm sorry to have to inform you...\n\n"
        f"--B\n{status_part}\n"
        "--B\nContent-Type: text/rfc822-headers\n\n"
        "From: Shop <shop@example.com>\nTo: ann@example.net\nSubject: Your order\n\n"
        "--B--\n"
    ).encode()


USER_UNKNOWN = """
Final-Recipient: rfc822; ann@example.net
Original-Recipient: rfc822;Ann@Example.net
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; 550 5.1.1 <ann@example.net>: Recipient address
    rejected: User unknown in local recipient table
"""


def test_a_dsn_of_an_unknown_user_is_a_hard_bounce():
    report = read_report(dsn(USER_UNKNOWN))
    assert report.kind is ReportKind.HARD
    assert report.recipient == "ann@example.net"  # Original-Recipient, lower-cased
    assert report.status == "5.1.1" and report.user_unknown
    assert report.reason == (
        "550 5.1.1 <ann@example.net>: Recipient address rejected: "
        "User unknown in local recipient table"
    )
    assert report.reader == "dsn"


def test_a_permanent_failure_that_is_not_about_the_address_is_hard_without_user_unknown():
    report = read_report(
        dsn("Final-Recipient: rfc822; ann@example.net\nAction: failed\nStatus: 5.7.1")
    )
    assert (report.kind, report.user_unknown, report.reason) == (
        ReportKind.HARD,
        False,
        "failed 5.7.1",
    )


@pytest.mark.parametrize(
    "fields",
    [
        "Final-Recipient: rfc822; ann@example.net\nAction: delayed\nStatus: 4.2.2",
        # the remote MTA gave up retrying: the message failed, the address may well be fine
        "Final-Recipient: rfc822; ann@example.net\nAction: failed\nStatus: 4.4.7",
    ],
)
def test_delays_and_temporary_failures_are_soft_bounces(fields):
    report = read_report(dsn(fields))
    assert report.kind is ReportKind.SOFT and report.recipient == "ann@example.net"


def test_a_success_notification_is_kept_as_unknown():
    report = read_report(
        dsn("Final-Recipient: rfc822; ann@example.net\nAction: delivered\nStatus: 2.0.0")
    )
    assert report.kind is ReportKind.UNKNOWN and "success" in report.reason


def test_with_several_recipients_the_gravest_decides():
    delayed = "Final-Recipient: rfc822; bob@example.net\nAction: delayed\nStatus: 4.2.2"
    report = read_report(dsn(delayed, USER_UNKNOWN))
    assert report.kind is ReportKind.HARD and report.recipient == "ann@example.net"


def test_a_global_delivery_status_report_is_read_too():
    part = (
        "Content-Type: message/global-delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.net\n\n"
        "Final-Recipient: rfc822; zoë@example.net\nAction: failed\nStatus: 5.1.1\n"
    )
    report = read_report(dsn(part=part))
    assert report.kind is ReportKind.HARD and report.recipient == "zoë@example.net"


@pytest.mark.parametrize(
    ("mail", "says"),
    [
        (
            dsn(part="Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n"),
            "per-recipient",
        ),
        (
            dsn("Final-Recipient: rfc822; ann@example.net\nAction: failed\nStatus: five"),
            "not a status code",
        ),
        (dsn("Final-Recipient: rfc822; ann@example.net\nStatus: 5.1.1"), "no Action"),
        (dsn("Action: failed\nStatus: 5.1.1"), "Final-Recipient"),
        (
            dsn("Final-Recipient: rfc822; ann@example.net\nAction: exploded\nStatus: 5.1.1"),
            "Action",
        ),
        (
            dsn("Final-Recipient: rfc822; ann@example.net\nAction: failed\nStatus: 2.0.0"),
            "success status",
        ),
        (
            dsn(part="Content-Type: text/plain\n\nnot a report\n"),
            "without a message/delivery-status",
        ),
        (
            b"From: MAILER-DAEMON@mx.example.net\nMIME-Version: 1.0\n"
            b"Content-Type: multipart/report; report-type=delivery-status\n\nno boundary at all\n",
            "boundary",
        ),
        (b"", "empty"),
        (b"\r\n\r\njust a body, no header\r\n", "no header"),
    ],
)
def test_malformed_delivery_status_reports_say_what_is_wrong(mail, says):
    report = read_report(mail)
    assert report.kind is ReportKind.MALFORMED
    assert says in report.reason


QMAIL = b"""From: MAILER-DAEMON@mx.example.net
To: bounce+dl-42-0123abcd@bounces.example.com
Subject: failure notice

Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<ann@example.net>:
192.0.2.1 does not like recipient.
Remote host said: 550 5.1.1 <ann@example.net>... User unknown
Giving up on 192.0.2.1.

--- Below this line is a copy of the message.

From: Shop <shop@example.com>
To: ann@example.net
Subject: Your order
"""


def test_a_non_standard_bounce_is_read_by_flufl_bounce():
    report = read_report(QMAIL)
    assert report.kind is ReportKind.HARD
    assert report.reader == "flufl.bounce"
    assert report.recipient == "ann@example.net"
    assert report.reason == "550 5.1.1 <ann@example.net>... User unknown"
    assert report.status == "5.1.1" and report.user_unknown


def test_a_non_standard_bounce_without_from_is_not_given_to_flufl_bounce():
    # flufl.bounce's detectors read From, and some raise without it
    report = read_report(QMAIL.replace(b"From: MAILER-DAEMON@mx.example.net\n", b""))
    assert report.kind is ReportKind.UNKNOWN and "no From" in report.reason


def test_an_auto_reply_is_unknown():
    reply = (
        b"From: ann@example.net\nTo: shop@example.com\nSubject: Out of office\n\nBack on Monday.\n"
    )
    report = read_report(reply)
    assert report.kind is ReportKind.UNKNOWN and report.reader is None


def arf(feedback_fields: str, *, enclosed_to: str = "ann@example.net") -> bytes:
    return (
        "From: feedback@fbl.example.net\n"
        f"To: {VERP}\n"
        "Subject: complaint about message from 192.0.2.7\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\n\n'
        "--F\nContent-Type: text/plain\n\nThis is an email abuse report.\n\n"
        "--F\nContent-Type: message/feedback-report\n\n"
        f"{feedback_fields.strip()}\n\n"
        "--F\nContent-Type: message/rfc822\nContent-Disposition: inline\n\n"
        f"From: Shop <shop@example.com>\nTo: {enclosed_to}\nSubject: Your order\n\nHello\n\n"
        "--F--\n"
    ).encode()


def test_an_arf_abuse_report_is_a_complaint():
    report = read_report(
        arf(
            "Feedback-Type: abuse\nUser-Agent: SomeGenerator/1.0\nVersion: 1\n"
            "Original-Mail-From: <bounce+dl-42-0123abcd@bounces.example.com>\n"
            "Original-Rcpt-To: <Ann@example.net>\nArrival-Date: Mon, 7 Dec 2026 07:00:00 +0000"
        )
    )
    assert report.kind is ReportKind.COMPLAINT and report.reader == "arf"
    assert report.recipient == "ann@example.net"
    assert report.reason == "feedback report: abuse from SomeGenerator/1.0"


def test_an_arf_report_without_original_rcpt_to_names_the_enclosed_recipient():
    report = read_report(
        arf("Feedback-Type: fraud\nUser-Agent: X/1\nVersion: 1", enclosed_to="bob@example.net")
    )
    assert report.kind is ReportKind.COMPLAINT and report.recipient == "bob@example.net"


def test_a_not_spam_report_is_no_complaint():
    report = read_report(arf("Feedback-Type: not-spam\nUser-Agent: X/1\nVersion: 1"))
    assert report.kind is ReportKind.UNKNOWN and "not a complaint" in report.reason


def test_an_arf_report_without_feedback_type_is_malformed():
    report = read_report(arf("User-Agent: X/1\nVersion: 1"))
    assert report.kind is ReportKind.MALFORMED and "Feedback-Type" in report.reason


@pytest.mark.parametrize(
    "mail",
    [
        b"\x00\xff\xfe garbage \x00",
        b"From: \xff\xfe\nContent-Type: multipart/report; boundary=x\n\n--x\n\x00\n--x--",
        dsn(
            "Final-Recipient: rfc822; ann@example.net\nAction: failed\nStatus: 5.1.1\n"
            "Diagnostic-Code: smtp; 550 \x00evil\x01 \xe9t\xe9"
        ),
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=a\n\n"
        + b"--a\nContent-Type: message/delivery-status\n\n" * 200,
        b"From: x@y\nContent-Type: message/rfc822\n\n" * 50,
    ],
)
def test_hostile_mail_never_raises_and_keeps_no_control_characters(mail):
    report = read_report(mail)
    assert isinstance(report.kind, ReportKind)
    for text in (report.reason, report.recipient or ""):
        assert not any(ord(c) < 32 for c in text), text
