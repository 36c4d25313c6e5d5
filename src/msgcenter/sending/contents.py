"""Compiled publications, by id: what the dispatcher renders messages with, and what a mirror
page renders a sent message again with."""

from __future__ import annotations

import asyncio

from msgcenter.publications import Publication, compile_publication
from msgcenter.render import CompiledContent
from msgcenter.store import publications as publication_store
from msgcenter.store.database import Database


class ContentCache:
    """Compiled publications by id (publications are immutable, so entries never go stale)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._compiled: dict[int, tuple[Publication, CompiledContent]] = {}

    async def get(self, publication_id: int) -> tuple[Publication, CompiledContent]:
        """The publication and its compiled content, read and compiled in a thread when not
        cached yet; raises :class:`TemplateSyntaxProblem` if it does not compile."""
        found = self._compiled.get(publication_id)
        if found is None:
            found = await asyncio.to_thread(self.load, publication_id)
        return found

    def load(self, publication_id: int) -> tuple[Publication, CompiledContent]:
        """The same from a thread (it reads the database when not cached yet); raises
        :class:`LookupError` if the publication is not there."""
        found = self._compiled.get(publication_id)
        if found is None:
            with self._db.read() as conn:
                publication = publication_store.get(conn, publication_id)
            if publication is None:
                raise LookupError(f"publication {publication_id} vanished")
            found = publication, compile_publication(publication)
            self._compiled[publication_id] = found
        return found
