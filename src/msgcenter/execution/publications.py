"""Publications on an execution instance: what the control instance (or ``msgcenter exec
publication load``) publishes and unpublishes, and what is in force (SPEC §4)."""

from __future__ import annotations

from datetime import UTC, datetime

from msgcenter.errors import NotFoundError, PermissionDeniedError
from msgcenter.operators import Operator, Right
from msgcenter.publications import Publication, PublicationSpec, compile_publication
from msgcenter.store import publications as publication_store
from msgcenter.store.database import Database


class PublicationService:
    """The publications of one execution instance, in the folder of the operator that acts."""

    def __init__(self, db: Database) -> None:
        self._db = db

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
        compile_publication(Publication.draft(spec))
        with self._db.write() as conn:
            return publication_store.put(conn, spec, datetime.now(UTC))

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
