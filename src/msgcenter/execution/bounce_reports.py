"""The kept bounce reports of an execution instance, as operators read them (SPEC §3.7, §3.9):
the API, the CLI and the console call this one service.

Reading them takes ``mc_admin``. A report concerns a message only through the
delivery log its bounce address named, so an operator restricted to a folder
sees the reports whose delivery log lies in its folder; a report naming no
message here (its log purged, or never ours) is shown to operators of every
folder only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from msgcenter.bounces import ReportFilter, ReportKind, ShownReport
from msgcenter.errors import InvalidInputError, NotFoundError
from msgcenter.operators import Operator, Right
from msgcenter.store import bounces as bounce_store
from msgcenter.store.database import Database

#: the window of the counts by kind when none is asked for
DEFAULT_HOURS = 24
#: the longest window of the counts: reports are purged after bounces.retention_days anyway
MAX_HOURS = 24 * 366


@dataclass(frozen=True, slots=True)
class KindCounts:
    """Reports received in a window, by kind."""

    hours: int
    since: datetime
    counts: dict[ReportKind, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class BounceReports:
    """The kept reports of one execution instance."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def search(
        self,
        criteria: ReportFilter,
        operator: Operator,
        *,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[ShownReport]:
        """Reports matching ``criteria`` that ``operator`` may see, newest first, with ids below
        ``before_id`` (the keyset of the next page)."""
        operator.require(Right.MC_ADMIN)
        if criteria.since and criteria.until and criteria.since >= criteria.until:
            raise InvalidInputError(
                "empty period",
                detail=f"since ({criteria.since.isoformat()}) must be before until "
                f"({criteria.until.isoformat()})",
            )
        with self._db.read() as conn:
            return bounce_store.search(
                conn, criteria, folder=operator.folder, before_id=before_id, limit=limit
            )

    def get(self, report_id: int, operator: Operator) -> ShownReport:
        """One report; :class:`NotFoundError` when there is none the operator may see."""
        operator.require(Right.MC_ADMIN)
        with self._db.read() as conn:
            found = bounce_store.get(conn, report_id, folder=operator.folder)
        if found is None:
            raise NotFoundError(f"no bounce report {report_id}")
        return found

    def counts(self, operator: Operator, hours: int = DEFAULT_HOURS) -> KindCounts:
        """Reports received in the last ``hours`` that the operator may see, by kind."""
        operator.require(Right.MC_ADMIN)
        if not 1 <= hours <= MAX_HOURS:
            raise InvalidInputError(
                "invalid window", detail=f"hours must be from 1 to {MAX_HOURS}, not {hours}"
            )
        since = datetime.now(UTC) - timedelta(hours=hours)
        with self._db.read() as conn:
            counts = bounce_store.count_by_kind(conn, since, folder=operator.folder)
        return KindCounts(hours, since, counts)
