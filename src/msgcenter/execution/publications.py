"""Publications on an execution instance: what the control instance (or ``msgcenter exec
publication load``) publishes and unpublishes, and what is in force (SPEC §4)."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from msgcenter.channels.email.config import SmtpSettings
from msgcenter.channels.email.dkim import alignment_problem
from msgcenter.channels.email.identity import domain_of
from msgcenter.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from msgcenter.events.model import Channel
from msgcenter.operators import Operator, Right
from msgcenter.publications import (
    Publication,
    PublicationSpec,
    check_list_unsubscribe,
    compile_publication,
)
from msgcenter.store import publications as publication_store
from msgcenter.store.database import Database

log = structlog.get_logger(__name__)


class PublicationService:
    """The publications of one execution instance, in the folder of the operator that acts."""

    def __init__(self, db: Database, smtp: SmtpSettings | None = None) -> None:
        self._db = db
        #: the relay settings whose DKIM keys and bounce domain a sender must align with
        self._smtp = smtp

    def publish(self, spec: PublicationSpec, operator: Operator) -> list[Publication]:
        """Validate (compile every part) and store both flavours of ``spec`` for the operator's
        folder; raises :class:`~msgcenter.render.TemplateSyntaxProblem` with the part and line."""
        operator.require(Right.MC_ADMIN)
        if operator.folder is not None:
            if spec.folder not in (None, operator.folder):
                raise PermissionDeniedError(
                    f"operator '{operator.login}' is restricted to folder "
                    f"'{operator.folder}', not '{spec.folder}'"
                )
            spec = spec.model_copy(update={"folder": operator.folder})
        check_list_unsubscribe(spec.content)
        compile_publication(Publication.draft(spec))
        self._check_alignment(spec)
        with self._db.write() as conn:
            return publication_store.put(conn, spec, datetime.now(UTC))

    def _check_alignment(self, spec: PublicationSpec) -> None:
        """Warn about (or, with ``smtp.dmarc_alignment = "refuse"``, refuse) an email template
        whose From domain no DKIM key nor bounce domain of this instance is aligned with."""
        if self._smtp is None or spec.channel is not Channel.EMAIL or not spec.content.sender:
            return
        problem = alignment_problem(domain_of(spec.content.sender), self._smtp)
        if problem is None:
            return
        if self._smtp.dmarc_alignment == "refuse":
            raise InvalidInputError(
                "the template's From domain is not aligned for DMARC", detail=problem
            )
        log.warning(
            "published template whose From domain is not aligned for DMARC",
            action="publication.dmarc_unaligned",
            template=spec.template,
            reason=problem,
        )

    def unpublish(self, template: str, folder: str | None, operator: Operator) -> int:
        """Retire both flavours of ``template`` (in the operator's folder, if it has one);
        returns how many; :class:`NotFoundError` when none was active."""
        target = operator.folder if operator.folder is not None else folder
        with self._db.write() as conn:
            retired = publication_store.remove(conn, template, target, datetime.now(UTC))
        if not retired:
            raise NotFoundError(
                f"no active publication of template '{template}'"
                + (f" in folder '{target}'" if target else "")
            )
        return retired

    def active(self, operator: Operator) -> list[Publication]:
        """The publications in force, of the operator's folder or (without one) of every folder."""
        with self._db.read() as conn:
            return publication_store.list_active(
                conn, operator.folder, any_folder=operator.folder is None
            )
