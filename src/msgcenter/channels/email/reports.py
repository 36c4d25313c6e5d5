"""Reading a mail sent back to a bounce address (SPEC §3.7): a delivery-status notification
(RFC 3464), a feedback-loop complaint (ARF, RFC 5965), or a non-standard bounce.

Standard reports are read with the standard library first: their fields say
exactly which recipient failed and how (``Action``, ``Status``,
``Diagnostic-Code``; ``Feedback-Type``). Anything else goes to the heuristic
detectors of ``flufl.bounce`` (Mailman's), which know the formats older MTAs
(qmail, Exim, Exchange …) write. Reading never raises: a mail that breaks its own
format is a ``malformed`` report with the reason, one that is nothing we know an
``unknown`` one.
"""

from __future__ import annotations

import email
import email.errors
import email.parser
import logging
import re
from collections.abc import Iterator
from email.message import Message
from email.utils import collapse_rfc2231_value

from flufl.bounce import all_failures

from msgcenter.bounces import Report, ReportKind
from msgcenter.channels.email.replies import USER_UNKNOWN_CODES, is_user_unknown, one_line

#: an RFC 3463 status code: class.subject.detail (RFC 3464 §2.3.4)
_STATUS = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")
#: ``type ; value`` of Final-Recipient, Original-Recipient, Diagnostic-Code (RFC 3464 §2.3)
_TYPED = re.compile(r"\s*[A-Za-z0-9-]+\s*;\s*(.*)", re.DOTALL)
#: a basic and an enhanced reply code at the start of a diagnostic (RFC 5321 §4.2, RFC 3463)
_DIAGNOSTIC = re.compile(r"\b([45]\d\d)[ -]([245]\.\d{1,3}\.\d{1,3})\b[^\r\n]*")
#: the empty line that ends a block of report fields (RFC 3464 §2.1, RFC 5965 §3.1)
_BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")
#: control characters (NUL included, which PostgreSQL cannot store) are not kept
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
#: Action values (RFC 3464 §2.3.3)
_FAILED, _DELAYED = "failed", "delayed"
_SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded"})
#: Feedback-Type values that are a recipient's complaint (RFC 5965 §7.3; IANA registry);
#: ``not-spam`` (RFC 6430) and ``auth-failure`` (RFC 6591) are not
_COMPLAINTS = frozenset({"abuse", "fraud", "virus", "other"})
#: parts whose content is another message: never searched for reports of their own
_ENCLOSED = frozenset({"message/rfc822", "text/rfc822-headers", "message/global"})
_DELIVERY_STATUS = frozenset({"message/delivery-status", "message/global-delivery-status"})
_FEEDBACK = "message/feedback-report"
#: flufl.bounce logs each detector it runs (INFO) and the traceback of one that raises
#: (ERROR); what it found, or that it could not, is in the kept report's reason instead
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)
_BOUNDARY_DEFECTS = (
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
)


def read_report(raw: bytes) -> Report:
    """What the mail ``raw`` says; never raises."""
    try:
        return _read(raw)
    except Exception as exc:  # noqa: BLE001 - a hostile mail must never stop the receiver
        return Report(
            ReportKind.MALFORMED, f"unreadable mail: {type(exc).__name__}: {_clean(str(exc))}"
        )


def _read(raw: bytes) -> Report:
    if not raw.strip():
        return Report(ReportKind.MALFORMED, "empty mail")
    # compat32: the lenient parser, and the Message flufl.bounce's detectors expect
    message = email.message_from_bytes(raw)
    if not message.keys():
        return Report(ReportKind.MALFORMED, "no header: not a mail (RFC 5322 §2.1)")
    report_type = _report_type(message)
    if message.get_content_type() == "multipart/report" and (
        not message.is_multipart() or any(isinstance(d, _BOUNDARY_DEFECTS) for d in message.defects)
    ):
        return Report(
            ReportKind.MALFORMED,
            "multipart/report whose parts cannot be found (boundary missing or broken, RFC 6522)",
        )
    parts = list(_parts(message))
    feedback = next((p for p in parts if p.get_content_type() == _FEEDBACK), None)
    if feedback is not None or report_type == "feedback-report":
        return _feedback(feedback, parts)
    status = next((p for p in parts if p.get_content_type() in _DELIVERY_STATUS), None)
    if status is not None or report_type == "delivery-status":
        return _delivery_status(status)
    return _non_standard(message, parts)


# -- RFC 3464: delivery-status notifications -------------------------------------------------


def _delivery_status(part: Message | None) -> Report:
    if part is None:
        return Report(
            ReportKind.MALFORMED,
            "delivery-status report without a message/delivery-status part (RFC 3464 §2)",
        )
    recipients = [
        block
        for block in _field_blocks(part)
        if any(block.get(name) is not None for name in ("Final-Recipient", "Action", "Status"))
    ]
    if not recipients:
        return Report(
            ReportKind.MALFORMED,
            "delivery-status report without per-recipient fields "
            "(Final-Recipient, Action, Status: RFC 3464 §2.3)",
        )
    read = [_recipient(block) for block in recipients]
    malformed = [r for r in read if r.kind is ReportKind.MALFORMED]
    if malformed:
        return malformed[0]
    # one recipient per message is what we send; with several, the gravest decides
    for kind in (ReportKind.HARD, ReportKind.SOFT):
        for report in read:
            if report.kind is kind:
                return report
    return read[0]


def _recipient(block: Message) -> Report:
    """One per-recipient block of a delivery-status report."""
    recipient = _typed_address(block.get("Original-Recipient")) or _typed_address(
        block.get("Final-Recipient")
    )
    if recipient is None:
        return Report(
            ReportKind.MALFORMED, "per-recipient fields without a Final-Recipient (RFC 3464 §2.3.2)"
        )
    # the first word: some MTAs add a comment after the value
    action = next(iter(_clean(_text(block.get("Action"))).lower().split()), "")
    if not action:
        return Report(
            ReportKind.MALFORMED,
            f"no Action for {recipient} (RFC 3464 §2.3.3)",
            recipient=recipient,
        )
    status_field = _clean(_text(block.get("Status")))
    status = _STATUS.match(status_field)
    if status_field and status is None:
        return Report(
            ReportKind.MALFORMED,
            f"Status {status_field[:40]!r} of {recipient} is not a status code (RFC 3464 §2.3.4)",
            recipient=recipient,
        )
    code = ".".join(status.groups()) if status is not None else None
    diagnostic = _diagnostic(block.get("Diagnostic-Code"))
    reason = diagnostic or f"{action}" + (f" {code}" if code else "")
    if action in _SUCCESS_ACTIONS:
        return Report(
            ReportKind.UNKNOWN,
            f"a delivery-status report of success (Action: {action}), nothing to apply",
            recipient=recipient,
            status=code,
            reader="dsn",
        )
    if action not in (_FAILED, _DELAYED):
        return Report(
            ReportKind.MALFORMED,
            f"Action {action[:40]!r} of {recipient} is none of RFC 3464 §2.3.3's",
            recipient=recipient,
        )
    if status is not None and status[1] == "2":
        return Report(
            ReportKind.MALFORMED,
            f"Action {action} with the success status {code} for {recipient}",
            recipient=recipient,
        )
    # a delay, or a failure the status calls temporary (4.x.x: the remote MTA gave up
    # retrying), says nothing for sure about the address
    permanent = action == _FAILED and (status is None or status[1] == "5")
    unknown_user = permanent and (
        (int(status[2]), int(status[3])) in USER_UNKNOWN_CODES
        if status is not None
        else _diagnostic_says_user_unknown(diagnostic)
    )
    return Report(
        ReportKind.HARD if permanent else ReportKind.SOFT,
        reason,
        recipient=recipient,
        status=code,
        user_unknown=unknown_user,
        reader="dsn",
    )


# -- RFC 5965: feedback-loop complaints -------------------------------------------------------


def _feedback(part: Message | None, parts: list[Message]) -> Report:
    if part is None:
        return Report(
            ReportKind.MALFORMED,
            "feedback report without a message/feedback-report part (RFC 5965 §2)",
        )
    blocks = _field_blocks(part)
    fields = blocks[0] if blocks else Message()
    feedback_type = _clean(_text(fields.get("Feedback-Type"))).lower()
    if not feedback_type:
        return Report(
            ReportKind.MALFORMED, "feedback report without a Feedback-Type (RFC 5965 §3.1)"
        )
    recipient = _address(_text(fields.get("Original-Rcpt-To")))
    if recipient is None:
        enclosed = next((p for p in parts if p.get_content_type() in _ENCLOSED), None)
        recipient = _enclosed_recipient(enclosed)
    source = _clean(_text(fields.get("User-Agent") or fields.get("Reporting-MTA")))[:80]
    reason = f"feedback report: {feedback_type}" + (f" from {source}" if source else "")
    if feedback_type not in _COMPLAINTS:
        return Report(
            ReportKind.UNKNOWN,
            f"{reason}: not a complaint, nothing to apply",
            recipient=recipient,
            reader="arf",
        )
    return Report(ReportKind.COMPLAINT, reason, recipient=recipient, reader="arf")


def _enclosed_recipient(part: Message | None) -> str | None:
    """The To of the original message a feedback report encloses, if it has one."""
    if part is None:
        return None
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return _address(_text(payload[0].get("To")))
    if isinstance(payload, str):
        headers = email.parser.HeaderParser().parsestr(_body_text(part))
        return _address(_text(headers.get("To")))
    return None


# -- anything else: flufl.bounce's detectors --------------------------------------------------


def _non_standard(message: Message, parts: list[Message]) -> Report:
    if message.get("From") is None:
        # flufl.bounce's detectors read the From header and some raise without one
        return Report(
            ReportKind.UNKNOWN,
            "no delivery-status or feedback report, and no From: not a bounce we can read",
        )
    try:
        temporary, permanent = all_failures(message)
    except Exception as exc:  # noqa: BLE001 - heuristics over hostile input: a failure is "unknown"
        return Report(
            ReportKind.UNKNOWN,
            f"no bounce detector could read it ({type(exc).__name__})",
        )
    found = sorted(_decoded(a) for a in permanent) or sorted(_decoded(a) for a in temporary)
    if not found:
        return Report(
            ReportKind.UNKNOWN,
            "no delivery-status or feedback report, and no bounce detector recognised it",
        )
    diagnostic = _body_diagnostic(parts)
    if permanent:
        return Report(
            ReportKind.HARD,
            diagnostic or f"non-standard bounce: permanent failure for {found[0]}",
            recipient=found[0],
            status=_status_of(diagnostic),
            user_unknown=_diagnostic_says_user_unknown(diagnostic),
            reader="flufl.bounce",
        )
    return Report(
        ReportKind.SOFT,
        diagnostic or f"non-standard bounce: temporary failure for {found[0]}",
        recipient=found[0],
        status=_status_of(diagnostic),
        reader="flufl.bounce",
    )


def _body_diagnostic(parts: list[Message]) -> str:
    """The first ``550 5.1.1 …`` line of the bounce's own text parts, or ''."""
    for part in parts:
        if part.get_content_type() != "text/plain" or part.is_multipart():
            continue
        body = part.get_payload(decode=True)
        if not isinstance(body, bytes):
            continue
        found = _DIAGNOSTIC.search(body.decode("utf-8", "replace"))
        if found is not None:
            return _clean(found[0])
    return ""


def _status_of(diagnostic: str) -> str | None:
    found = _DIAGNOSTIC.match(diagnostic)
    return found[2] if found is not None else None


# -- helpers ---------------------------------------------------------------------------------


def _parts(message: Message) -> Iterator[Message]:
    """The parts of ``message`` (itself included), without entering enclosed messages or the
    header blocks of a report part."""
    yield message
    content_type = message.get_content_type()
    if (
        content_type in _ENCLOSED
        or content_type in _DELIVERY_STATUS
        or content_type == _FEEDBACK
        or not message.is_multipart()
    ):
        return
    payload = message.get_payload()
    if isinstance(payload, list):
        for part in payload:
            if isinstance(part, Message):
                yield from _parts(part)


def _report_type(message: Message) -> str:
    if message.get_content_type() != "multipart/report":
        return ""
    value = message.get_param("report-type")
    if value is None:
        return ""
    return str(collapse_rfc2231_value(value)).strip().lower()


def _field_blocks(part: Message) -> list[Message]:
    """The blocks of ``name: value`` fields of a report part (RFC 3464 §2.1, RFC 5965 §3.1).

    The parser already splits a message/delivery-status part into blocks; other report
    parts are parsed as an enclosed message, whose body holds the further blocks.
    """
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _parse_blocks(_body_text(part))
    blocks: list[Message] = []
    for item in payload:
        if isinstance(item, Message):
            blocks.append(item)
            blocks.extend(_parse_blocks(_body_text(item)))
    return [block for block in blocks if block.keys()]


def _body_text(part: Message) -> str:
    """The body of a part that is no multipart, decoded (UTF-8 is allowed in report fields,
    RFC 6533 §3), or ''."""
    if not isinstance(part.get_payload(), str):
        return ""
    body = part.get_payload(decode=True)
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else ""


def _parse_blocks(text: str) -> list[Message]:
    parser = email.parser.HeaderParser()
    return [
        parser.parsestr(block.strip("\r\n") + "\n")
        for block in _BLANK_LINE.split(text)
        if block.strip()
    ]


def _text(value: object) -> str:
    """A header's value as text (compat32 gives a Header for 8-bit values)."""
    if value is None:
        return ""
    text = str(value)
    # the parser keeps 8-bit bytes as surrogate escapes: UTF-8 (RFC 6532, RFC 6533) is read
    # back, anything else replaced, since surrogates can be neither stored nor logged
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def _clean(text: str) -> str:
    return one_line(_CONTROL.sub(" ", text))


def _typed_address(value: object) -> str | None:
    """The address of ``rfc822; ann@example.com`` (RFC 3464 §2.3.2)."""
    typed = _TYPED.match(_text(value))
    return _address(typed[1]) if typed is not None else None


def _address(text: str) -> str | None:
    address = _clean(text).strip("<> ")
    if not address or "@" not in address or len(address) > 255:
        return None
    return address.lower()


def _diagnostic(value: object) -> str:
    """The text of ``smtp; 550 5.1.1 …`` (RFC 3464 §2.3.6), on one line."""
    text = _text(value)
    typed = _TYPED.match(text)
    return _clean(typed[1] if typed is not None else text)


def _diagnostic_says_user_unknown(diagnostic: str) -> bool:
    """Whether ``550 5.1.1 …`` (a reply code first) says the address does not exist."""
    code = diagnostic[:3]
    return code.isdigit() and is_user_unknown(int(code), diagnostic[4:])


def _decoded(address: bytes | str) -> str:
    text = address.decode("utf-8", "replace") if isinstance(address, bytes) else address
    return _clean(text).lower()
