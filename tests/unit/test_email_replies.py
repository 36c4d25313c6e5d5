"""Reading SMTP replies: temporary, permanent, and "user unknown" (RFC 5321, RFC 3463)."""

import pytest

from msgcenter.channels.email.replies import SendOutcome, SendStatus, is_user_unknown, one_line


@pytest.mark.parametrize(
    ("code", "reply", "unknown"),
    [
        (550, "5.1.1 <x@example.com>: Recipient address rejected: User unknown", True),
        (550, "5.1.0 Address rejected", True),
        (550, "5.1.10 Recipient address has null MX", True),
        (550, "5.1.2 Host unknown", True),
        (550, "5.2.1 The email account that you tried to reach is disabled", True),
        (553, "sorry, no such user here", True),  # no enhanced code: the wording decides
        (550, "Requested action not taken: user unknown", True),
        (551, "User not local; no such mailbox", True),
        (552, "5.2.2 Mailbox full", False),
        (550, "5.7.1 Message rejected as spam", False),
        (550, "5.7.1 Recipient address rejected: user unknown in relay table", False),  # code wins
        (554, "Transaction failed", False),
        (550, "Requested action not taken: mailbox unavailable", False),  # too vague to quarantine
        (450, "4.1.1 Mailbox temporarily unknown", False),
    ],
)
def test_user_unknown(code, reply, unknown):
    assert is_user_unknown(code, reply) is unknown


def test_refusals_by_class():
    assert (
        SendOutcome.from_refusal(450, "4.2.1 try later", about_recipient=True).status
        is SendStatus.TEMPORARY
    )
    permanent = SendOutcome.from_refusal(550, "5.1.1 no such user", about_recipient=True)
    assert (permanent.status, permanent.user_unknown, permanent.code) == (
        SendStatus.PERMANENT,
        True,
        550,
    )
    assert permanent.reason == "550 5.1.1 no such user"
    full = SendOutcome.from_refusal(552, "5.3.4 Message too big", about_recipient=True)
    assert (full.status, full.user_unknown) == (SendStatus.PERMANENT, False)


def test_a_refused_sender_never_quarantines_the_recipient():
    outcome = SendOutcome.from_refusal(550, "5.1.1 sender unknown", about_recipient=False)
    assert (outcome.status, outcome.user_unknown) == (SendStatus.PERMANENT, False)


def test_reasons_are_one_short_line():
    assert one_line("550-first\n550 second  line") == "550-first 550 second line"
    assert len(one_line("x " * 1000)) == 300
