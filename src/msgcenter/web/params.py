"""Parameter types shared by the APIs: bounds a database can hold, checked before it is asked;
the keyset cursor of the searches that page newest first.

A row id beyond a signed 64-bit integer, or a timestamp whose offset moves it outside
years 1–9999 once in UTC, would otherwise fail in the driver as a server error.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Protocol, TypeVar

from fastapi import Path
from pydantic import AfterValidator

from msgcenter.errors import InvalidInputError

#: the largest id a BIGINT (and SQLite's INTEGER) column holds
MAX_ROW_ID = 2**63 - 1
#: the largest id an INTEGER column holds on PostgreSQL (32 bits): the ids of the control
#: instance's design rows (seeds)
MAX_SMALL_ROW_ID = 2**31 - 1


def to_utc(moment: datetime | None) -> datetime | None:
    """``moment`` in UTC (without a zone: taken as UTC); ValueError when UTC cannot hold it."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{moment.isoformat()} is outside years 1 to 9999 in UTC") from None


def form_moment(text: str, name: str) -> datetime | None:
    """A form's date, ``datetime-local`` (UTC) or ISO 8601 field, in UTC; None when empty;
    :class:`InvalidInputError` naming ``name`` when it is no time UTC can hold."""
    if not text:
        return None
    try:
        return to_utc(datetime.fromisoformat(text))
    except ValueError as exc:
        reason = str(exc) if "years" in str(exc) else f"{text!r} is not a date and time"
        raise InvalidInputError(f"invalid {name}", detail=f"{name}: {reason}") from None


#: a path parameter naming a row by its id
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
#: a path parameter naming a row of a table whose ids are INTEGER
SmallRowId = Annotated[int, Path(ge=1, le=MAX_SMALL_ROW_ID)]
#: an optional timestamp parameter, in UTC
UtcMoment = Annotated[datetime | None, AfterValidator(to_utc)]


class _Row(Protocol):
    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=_Row)


def newest_first_page(
    search: Callable[[int | None, int], list[R]], cursor: str | None, limit: int
) -> tuple[list[R], str | None]:
    """One page of a search listed newest first, and the cursor of the next (None after the
    last): ``search(before_id, n)`` returns up to ``n`` rows with ids below ``before_id``."""
    found = search(decode_cursor(cursor) if cursor else None, limit + 1)
    page = found[:limit]
    return page, encode_cursor(page[-1].id) if len(found) > limit else None


def encode_cursor(row_id: int) -> str:
    """The opaque ``next_cursor`` of a page listed newest first: the rows below ``row_id``."""
    return base64.urlsafe_b64encode(f"before:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The row id a ``cursor`` of :func:`encode_cursor` pages below; :class:`InvalidInputError`
    when it is not one."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        before = int(value)
        if kind != "before" or not 1 <= before <= MAX_ROW_ID:
            raise ValueError
        return before
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInputError(
            "invalid cursor", detail="pass next_cursor from a previous page unchanged"
        ) from None
