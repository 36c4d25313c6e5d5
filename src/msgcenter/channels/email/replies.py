"""What an SMTP reply means for the message: sent, retry later, or failed for good (SPEC §3.7).

The basic reply code decides temporary (4xx) or permanent (5xx) (RFC 5321
§4.2.1). Among permanent failures, those that say the address itself is bad
("user unknown") are flagged so the address can be quarantined: by the
enhanced status code when the server sends one (RFC 3463, RFC 2034), else by
the wording that common MTAs use, the way bounce classifiers (Mailman's
flufl.bounce, Sisimai's "userunknown") read it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

#: enhanced status code at the start of the reply text: class.subject.detail (RFC 3463 §2)
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})\b")
#: subject.detail codes of a bad recipient address (only meaningful with class 5)
USER_UNKNOWN_CODES = frozenset(
    {
        (1, 0),  # other address status (RFC 3463 §3.2)
        (1, 1),  # bad destination mailbox address: no such user (RFC 3463 §3.2)
        (1, 2),  # bad destination system address: no such domain (RFC 3463 §3.2)
        (1, 3),  # bad destination mailbox address syntax (RFC 3463 §3.2)
        (1, 6),  # mailbox has moved, no forwarding address (RFC 3463 §3.2)
        (1, 10),  # recipient address has null MX: the domain accepts no mail (RFC 7505 §4.2)
        (2, 1),  # mailbox disabled, not accepting messages (RFC 3463 §3.3)
    }
)
#: basic codes that may mean "no such user" when no enhanced code says more (RFC 5321 §4.2.2)
_ADDRESS_REPLY_CODES = frozenset({550, 551, 553})
_USER_UNKNOWN_WORDING = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|address)|unknown recipient"
    r"|recipient unknown|mailbox (not found|does not exist)|does not exist"
    r"|invalid (recipient|mailbox)|user not found",
    re.IGNORECASE,
)
#: longest reason kept; replies can be long multi-line texts
_MAX_REASON = 300


class SendStatus(enum.StrEnum):
    """What became of one send attempt."""

    #: the relay accepted the message
    SENT = "sent"
    #: not sent this time (4xx, refused connection, timeout, dropped connection); retry later
    TEMPORARY = "temporary"
    #: refused for good (5xx); do not retry
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """The outcome of one send: status, the relay's reply code (None without a reply), one-line reason."""

    status: SendStatus
    code: int | None
    reason: str
    #: a permanent failure that says the recipient address does not exist: quarantine it
    user_unknown: bool = False

    @classmethod
    def sent(cls, code: int, reply: str) -> SendOutcome:
        return cls(SendStatus.SENT, code, one_line(f"{code} {reply}"))

    @classmethod
    def temporary(cls, reason: str, code: int | None = None) -> SendOutcome:
        return cls(SendStatus.TEMPORARY, code, one_line(reason))

    @classmethod
    def from_refusal(cls, code: int, reply: str, *, about_recipient: bool) -> SendOutcome:
        """The outcome of a refusal reply; ``about_recipient`` for RCPT or DATA, not MAIL."""
        reason = one_line(f"{code} {reply}")
        # 552 stays permanent: RFC 5321 §4.5.3.1.10 asks to retry it only as "too many
        # recipients", and every transaction here has a single recipient
        if code < 500:
            return cls(SendStatus.TEMPORARY, code, reason)
        unknown = about_recipient and is_user_unknown(code, reply)
        return cls(SendStatus.PERMANENT, code, reason, user_unknown=unknown)


def is_user_unknown(code: int, reply: str) -> bool:
    """Whether a 5xx reply says the recipient address does not exist or cannot receive mail."""
    if code < 500:
        return False
    enhanced = _ENHANCED.match(reply.lstrip())
    if enhanced is not None:
        return enhanced[1] == "5" and (int(enhanced[2]), int(enhanced[3])) in USER_UNKNOWN_CODES
    return code in _ADDRESS_REPLY_CODES and _USER_UNKNOWN_WORDING.search(reply) is not None


def one_line(text: str) -> str:
    """``text`` on one line, whitespace runs as one space, cut at a readable length."""
    line = " ".join(text.split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 1] + "…"
