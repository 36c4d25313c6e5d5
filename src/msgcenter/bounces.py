"""Asynchronous bounces and complaints: what a mail sent back to a bounce address says (SPEC §3.7).

A message accepted by the relay can still fail hours later: the receiving system
mails a report to the message's envelope sender, its VERP bounce address, which
names the delivery log. Each report is read as one :class:`Report` and applied
to that delivery log, then kept (a row per report, whatever it said):

- ``hard``: the message failed for good (RFC 3464 ``Action: failed`` with a 5.x.x
  status, or a non-standard bounce that says so). The sent delivery log becomes
  failed, its event ``delivery_failed``, and the address goes to quarantine.
- ``soft``: a delay or a transient failure (``Action: delayed``, a 4.x.x status).
  Nothing changes on the message; an address with ``soft_bounce_threshold`` of
  them within the window goes to quarantine.
- ``complaint``: the recipient reported the message as spam through a feedback
  loop (ARF, RFC 5965). The address goes to quarantine; the message stays sent.
- ``unknown``: a well-formed mail that is none of these (an auto-reply, a
  success notification): kept, nothing changes.
- ``malformed``: a report that breaks its own format (a delivery-status report
  without recipient fields, a status that is no status code): kept with the
  reason, nothing changes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from msgcenter.errors import InvalidInputError


class ReportKind(enum.StrEnum):
    """What a mail to a bounce address turned out to be."""

    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"
    UNKNOWN = "unknown"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Report:
    """One mail to a bounce address, as read: its kind and why."""

    kind: ReportKind
    #: one line: the remote server's diagnostic, the feedback type, or what was wrong
    reason: str
    #: the address the report names (Original-Recipient or Final-Recipient, Original-Rcpt-To,
    #: what a bounce detector found), when it names one
    recipient: str | None = None
    #: the RFC 3463 status code ("5.1.1"), when the report gives one
    status: str | None = None
    #: a hard bounce saying that the address itself does not exist
    user_unknown: bool = False
    #: how it was read: "dsn" (RFC 3464), "arf" (RFC 5965), "flufl.bounce", or None
    reader: str | None = None


@dataclass(frozen=True, slots=True)
class KeptReport:
    """A report as kept on the execution instance."""

    id: int
    received: datetime
    kind: ReportKind
    #: the delivery log its bounce address named (None when that log is not here)
    delivery_log_id: int | None
    #: the delivery log's address, or else the one the report names
    recipient: str | None
    reason: str
    #: bytes of the mail as received
    size: int


@dataclass(frozen=True, slots=True)
class ShownReport:
    """A kept report as operators read it: with the event and folder of its delivery log."""

    id: int
    received: datetime
    kind: ReportKind
    delivery_log_id: int | None
    #: the event of that delivery log (None when the report names no log here)
    event_id: int | None
    #: the folder of that delivery log
    folder: str | None
    recipient: str | None
    reason: str
    size: int


@dataclass(frozen=True, slots=True)
class ReportFilter:
    """Which kept reports to list; every criterion given must hold."""

    kind: ReportKind | None = None
    #: the whole address (the delivery log's, lower-cased, or the one the report names)
    recipient: str | None = None
    delivery_log_id: int | None = None
    #: received at or after
    since: datetime | None = None
    #: received before
    until: datetime | None = None


def parse_kind(text: str) -> ReportKind:
    """The report kind named ``text``; :class:`InvalidInputError` naming the known ones."""
    try:
        return ReportKind(text.strip().lower())
    except ValueError:
        known = ", ".join(k.value for k in ReportKind)
        raise InvalidInputError(
            f"unknown report kind {text!r}", detail=f"unknown report kind {text!r}; known: {known}"
        ) from None
